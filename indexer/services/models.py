"""One rule in one place: vectors of different models are never compared.

Every path that would encode for, or compare against, a collection, class set or classifier calls
`require_model`; it raises one typed error, `ModelMismatch` (409), with the same details everywhere.
"""

from __future__ import annotations

from indexer.errors import ModelMismatch


def require_model(
    what: str, model_id: str, expected: str, *, by: str = "this service", hint: str = ""
) -> None:
    """Raise ModelMismatch unless ``what`` (e.g. "collection 'trip'") uses ``expected``, the model of ``by``
    (this service, a classifier, a worker...)."""
    if model_id == expected:
        return
    message = (
        f"{what} uses model {model_id}; {by} runs {expected}"
        if by == "this service"
        else (f"{what} uses model {model_id}; {by} uses {expected}")
    )
    raise ModelMismatch(
        message + (f" ({hint})" if hint else ""), {"model_id": model_id, "expected_model": expected}
    )
