"""The model use cases of the CLI: list the catalogue and the cache, pull a model from the hub, write an
int8 copy, and check that the configured model can be loaded (indexer/model/). The CLI's `models`
commands and `clipsearch up` call this service only.

The quantiser (which loads onnxruntime) is imported only when a quantisation runs, so that every other
CLI command starts quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.model.catalogue import TINY_MODEL_ID, get_spec, hub_repo_id
from indexer.model.cpu import cpu_description
from indexer.model.files import (
    ModelListing,
    ResolvedModel,
    list_models,
    model_id_for_dir,
    pull_model,
    quantized_dir,
    resolve_model,
    validate_model_dir,
)
from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.model.quantize import Quantized

__all__ = ["TINY_MODEL_ID", "ModelListing", "ModelsService", "QuantizePlan", "ResolvedModel"]


@dataclass(frozen=True)
class QuantizePlan:
    """What a quantisation will read and write, and how, worked out before the (long) run."""

    model_id: str
    src: Path  # the fp32 model directory
    dst: Path  # where the int8 copy goes
    schemes: tuple[str, ...]
    min_cosine: float
    cpu: str
    cpu_features: tuple[str, ...]


class ModelsService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def listing(self) -> list[ModelListing]:
        """Every catalogue model (and any other cached one), with where it is on disk."""
        return list_models(self.settings)

    def in_catalogue(self, model_id: str) -> bool:
        return get_spec(model_id) is not None

    def hub_repo(self, model_id: str) -> str:
        return hub_repo_id(model_id)

    def pull(self, model_id: str, *, endpoint: str | None = None, force: bool = False) -> Path:
        """Download ``model_id`` into the cache (showing progress); return its directory."""
        return pull_model(self.settings, model_id, endpoint=endpoint, force=force, progress=True)

    def resolve(self, *, allow_download: bool = False) -> ResolvedModel:
        """The configured model's directory; raises ModelUnavailable when it is neither cached nor
        (with ``allow_download``) downloadable."""
        return resolve_model(self.settings, allow_download=allow_download)

    def plan_quantize(
        self, target: str, *, pull: bool = False, scheme: str | None = None, min_cosine: float | None = None
    ) -> QuantizePlan:
        """Where ``target`` (a model id or a model directory) is and where its int8 copy will go; with
        ``pull``, download the fp32 model first if it is missing."""
        from indexer.model.quantize import DEFAULT_SCHEMES

        as_dir = Path(target).expanduser()
        if as_dir.is_dir():
            validate_model_dir(as_dir)
            model_id, src = model_id_for_dir(as_dir, self.settings), as_dir
        else:
            resolved = resolve_model(self.settings, allow_download=pull, model_id=target)
            model_id, src = resolved.model_id, resolved.path
        cpu, features = cpu_description()
        return QuantizePlan(
            model_id=model_id,
            src=src,
            dst=quantized_dir(self.settings, model_id),
            schemes=(scheme,) if scheme else tuple(DEFAULT_SCHEMES),
            min_cosine=self.settings.int8_min_cosine if min_cosine is None else min_cosine,
            cpu=cpu,
            cpu_features=features,
        )

    def quantize(self, plan: QuantizePlan) -> Quantized:
        """Write the int8 copy; raises ModelUnavailable (writing nothing) when no scheme is faithful."""
        from indexer.model.quantize import quantize_model_dir

        return quantize_model_dir(
            plan.src,
            plan.dst,
            schemes=plan.schemes,
            min_cosine=plan.min_cosine,
            threads=self.settings.onnx_threads,
        )
