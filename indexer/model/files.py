"""Where model files come from: a local directory, the Hugging Face cache, or the bundled tiny model.

Nothing here touches the network unless asked: ``resolve_model`` looks in the cache only, and downloads
happen in ``pull_model`` (``clipsearch models pull``) or when a caller passes ``allow_download=True``.
Downloads go through ``huggingface_hub`` (``HF_ENDPOINT`` / ``settings.hf_endpoint`` honoured), which
resumes a dropped transfer with HTTP ranges and checks each file's size; every downloaded file is then
hashed against the sha256 (LFS) or git blob id the Hub lists for it, and a corrupt file is removed and
fetched again once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from indexer.errors import ModelUnavailable
from indexer.model.catalogue import BUNDLED_MODEL_IDS, CATALOGUE, TINY_MODEL_ID, hub_repo_id
from indexer.settings import Settings

log = logging.getLogger(__name__)

REQUIRED_FILES: Final = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
)
# Immich's repositories also hold ARM NN / RKNN builds for other hardware: skip those.
ALLOW_PATTERNS: Final = ["config.json", "visual/*", "textual/*"]
IGNORE_PATTERNS: Final = ["*.armnn", "*.rknn", "*.tflite", "*/rk*/*"]
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def tiny_model_dir(model_id: str = TINY_MODEL_ID) -> Path:
    """A random-weight test model that ships inside the package: ``tiny-test-clip`` (the fallback when no
    model exists) by default, or another bundled family (``tiny-test-rn``, ``tiny-test-siglip``,
    ``tiny-test-xlmr``)."""
    spec = CATALOGUE.get(model_id)
    if spec is None or not spec.bundled:
        raise ModelUnavailable(f"{model_id!r} is not a bundled model", {"model_id": model_id})
    return Path(__file__).resolve().parent / spec.bundled_dir


def hub_cache_dir(settings: Settings) -> Path:
    return settings.cache_dir / "hub"


def quantized_dir(settings: Settings, model_id: str) -> Path:
    """Where ``clipsearch models quantize`` writes the int8 copy of a model."""
    return settings.cache_dir / "int8" / _SAFE.sub("_", model_id)


def missing_files(path: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (path / name).is_file()]


def read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path / 'config.json'}: {exc}", {"path": str(path)}) from exc
    return config


def validate_model_dir(path: Path, model_id: str | None = None) -> None:
    """Raise ModelUnavailable naming what is missing unless ``path`` holds a complete model."""
    if not path.is_dir():
        raise ModelUnavailable(
            f"model directory {path} does not exist", {"path": str(path), "model_id": model_id}
        )
    missing = missing_files(path)
    if missing:
        raise ModelUnavailable(
            f"model directory {path} is incomplete: missing {', '.join(missing)}",
            {"path": str(path), "missing": missing, "model_id": model_id},
        )


def model_id_for_dir(path: Path, settings: Settings) -> str:
    """A local directory's model id: its config's ``model_id``, else MODEL_ID when set, else its name."""
    config = read_config(path)
    if isinstance(config.get("model_id"), str):
        return str(config["model_id"])
    if "model_id" in settings.model_fields_set:
        return settings.model_id
    return f"local:{path.name}"


@dataclass(frozen=True)
class ResolvedModel:
    model_id: str
    path: Path  # the fp32 model directory
    source: str  # "model_dir", "hub" or "bundled"

    @property
    def is_test_model(self) -> bool:
        return self.model_id in BUNDLED_MODEL_IDS


def _how_to_pull(model_id: str) -> str:
    return (
        f"model {model_id!r} is not available offline; download it with "
        f"`clipsearch models pull {model_id}` (needs access to the Hugging Face Hub, or HF_ENDPOINT), "
        f"or set MODEL_DIR to a local export"
    )


def _silent_tqdm() -> Any:
    from tqdm.auto import tqdm

    class _Silent(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def find_cached(settings: Settings, model_id: str) -> Path | None:
    """The complete cached snapshot of ``model_id``, without any network access."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir(settings)
    if not cache.is_dir():
        return None
    try:
        path = Path(
            snapshot_download(
                hub_repo_id(model_id),
                cache_dir=cache,
                local_files_only=True,
                allow_patterns=ALLOW_PATTERNS,
                ignore_patterns=IGNORE_PATTERNS,
                tqdm_class=_silent_tqdm(),
            )
        )
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if not missing_files(path) else None


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors huggingface_hub lets through (its HTTP client differs between versions)."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_snapshot(api: Any, repo_id: str, commit: str, snapshot: Path) -> list[str]:
    """Files of ``snapshot`` whose content does not hash to what the Hub lists for them."""
    from huggingface_hub.hf_api import RepoFile

    bad: list[str] = []
    for entry in api.list_repo_tree(repo_id, revision=commit, recursive=True):
        if not isinstance(entry, RepoFile):
            continue
        local = snapshot / entry.path
        if not local.is_file():
            continue
        if entry.lfs is not None:
            expected, actual = entry.lfs.sha256, _sha256(local)
        else:
            expected, actual = entry.blob_id, _git_blob_sha1(local)
        if expected and actual != expected.lower():
            log.warning(
                "integrity check failed for %s/%s: expected %s, got %s", repo_id, entry.path, expected, actual
            )
            bad.append(entry.path)
    return bad


def _remove_from_cache(snapshot: Path, names: Iterable[str]) -> None:
    for name in names:
        link = snapshot / name
        target = link.resolve()
        link.unlink(missing_ok=True)
        if target != link:
            target.unlink(missing_ok=True)


def pull_model(
    settings: Settings,
    model_id: str,
    *,
    endpoint: str | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Download (or find complete in the cache) ``model_id`` and return its directory.

    Raises ModelUnavailable with the reason when the download fails or stays corrupt.
    """
    if model_id in BUNDLED_MODEL_IDS:
        return tiny_model_dir(model_id)
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id = hub_repo_id(model_id)
    endpoint = endpoint or settings.hf_endpoint
    api = HfApi(endpoint=endpoint)
    tqdm_class = None if progress else _silent_tqdm()
    where = endpoint or "the Hugging Face Hub"
    failures: tuple[type[BaseException], ...] = (HfHubHTTPError, LocalEntryNotFoundError, *_network_errors())
    problems: list[str] = []
    for attempt in range(2):
        try:
            path = Path(
                snapshot_download(
                    repo_id,
                    cache_dir=hub_cache_dir(settings),
                    endpoint=endpoint,
                    allow_patterns=ALLOW_PATTERNS,
                    ignore_patterns=IGNORE_PATTERNS,
                    force_download=force and attempt == 0,
                    tqdm_class=tqdm_class,
                )
            )
            bad = verify_snapshot(api, repo_id, path.name, path)  # the snapshot folder is named by its commit
        except RepositoryNotFoundError as exc:
            raise ModelUnavailable(
                f"no model repository {repo_id!r} on {where}", {"model_id": model_id, "repo_id": repo_id}
            ) from exc
        except failures as exc:
            raise ModelUnavailable(
                f"download of {model_id!r} from {where} failed: {exc}",
                {"model_id": model_id, "repo_id": repo_id},
            ) from exc
        if not bad:
            validate_model_dir(path, model_id)
            return path
        problems = bad
        _remove_from_cache(path, bad)
    raise ModelUnavailable(
        f"download of {model_id!r} is corrupt (checksum mismatch in {', '.join(problems)}) after a retry",
        {"model_id": model_id, "repo_id": repo_id, "corrupt": problems},
    )


def resolve_model(
    settings: Settings,
    *,
    allow_download: bool = False,
    model_id: str | None = None,
    model_dir: Path | None = None,
) -> ResolvedModel:
    """The fp32 model directory to load: ``model_dir`` / settings.model_dir, else the bundled tiny model
    for its id, else the Hub cache (downloading only with ``allow_download``)."""
    local = model_dir or (settings.model_dir if model_id is None else None)
    if local is not None:
        local = local.expanduser()
        validate_model_dir(local)
        return ResolvedModel(model_id_for_dir(local, settings), local, "model_dir")
    wanted = model_id or settings.model_id
    if wanted in BUNDLED_MODEL_IDS:
        return ResolvedModel(wanted, tiny_model_dir(wanted), "bundled")
    cached = find_cached(settings, wanted)
    if cached is not None:
        return ResolvedModel(wanted, cached, "hub")
    if not allow_download:
        raise ModelUnavailable(
            _how_to_pull(wanted),
            {"model_id": wanted, "repo_id": hub_repo_id(wanted), "hint": f"clipsearch models pull {wanted}"},
        )
    return ResolvedModel(wanted, pull_model(settings, wanted), "hub")


@dataclass(frozen=True)
class ModelListing:
    model_id: str
    architecture: str
    pretrained: str
    image_size: int
    embed_dim: int
    approx_size_mb: int
    family: str  # clip, siglip, multilingual, nllb-siglip
    scoring: str  # softmax or sigmoid
    path: Path | None  # where it is on disk, None if not downloaded
    int8_path: Path | None
    default: bool


def list_models(settings: Settings) -> list[ModelListing]:
    rows = []
    for spec in CATALOGUE.values():
        path = tiny_model_dir(spec.model_id) if spec.bundled else find_cached(settings, spec.model_id)
        q = quantized_dir(settings, spec.model_id)
        rows.append(
            ModelListing(
                model_id=spec.model_id,
                architecture=spec.architecture,
                pretrained=spec.pretrained,
                image_size=spec.image_size,
                embed_dim=spec.embed_dim,
                approx_size_mb=spec.approx_size_mb,
                family=spec.family,
                scoring=spec.scoring,
                path=path,
                int8_path=q if not missing_files(q) else None,
                default=spec.model_id == settings.model_id,
            )
        )
    return rows
