"""Prompt templates and template ensembles (CLIP paper, section 3.1.4).

A class's prompt is rendered through each template (``"a photo of a {}."`` -> ``"a photo of a cat."``).
Without an ensemble every rendered text is its own reference vector, and the class scores the best of
them. With an ensemble the rendered texts of one prompt are encoded, each L2-normalised, averaged and
normalised again, giving one reference vector per prompt, as in the CLIP paper's ImageNet evaluation.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from indexer.errors import InvalidInput

PLACEHOLDER: Final = "{}"
DEFAULT_TEMPLATES: Final = ("a photo of a {}.",)
# The 7 templates that OpenAI's "Prompt Engineering for ImageNet" notebook selected from the paper's 80.
CLIP_ENSEMBLE: Final = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
MAX_TEMPLATES: Final = 100


def validate_templates(templates: list[str]) -> list[str]:
    """Each template holds exactly one ``{}``; duplicates are dropped, order kept."""
    if not templates:
        raise InvalidInput('templates must not be empty (use ["{}"] for the prompt as it is)')
    if len(templates) > MAX_TEMPLATES:
        raise InvalidInput(f"at most {MAX_TEMPLATES} templates")
    for template in templates:
        if template.count(PLACEHOLDER) != 1:
            raise InvalidInput(
                f"template {template!r} must contain exactly one {PLACEHOLDER}", {"template": template}
            )
    return list(dict.fromkeys(templates))


def render(template: str, prompt: str) -> str:
    """The template with the prompt in place of ``{}`` (no str.format: other braces stay as they are)."""
    return template.replace(PLACEHOLDER, prompt.strip(), 1)


def rendered(prompt: str, templates: list[str]) -> list[str]:
    if not prompt.strip():
        raise InvalidInput("a prompt must not be blank")
    return list(dict.fromkeys(render(t, prompt) for t in templates))


def normalise_rows(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """L2-normalise each row; a zero or non-finite row is an error."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidInput(f"expected a 2-d array of vectors, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInput("vectors must be finite numbers")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise InvalidInput(
            "a zero vector has no direction", {"rows": np.flatnonzero(norms[:, 0] < 1e-12).tolist()}
        )
    out: NDArray[np.float32] = (arr / norms).astype(np.float32)
    return out


def ensemble(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Mean of the L2-normalised vectors, normalised again: one vector for a prompt's templates."""
    mean = normalise_rows(vectors).mean(axis=0, keepdims=True)
    return normalise_rows(mean)[0]
