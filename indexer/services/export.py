"""The export use case: a collection's embeddings with id and metadata, as Parquet or as a zip of
vectors.npy and items.json, streamed as Weaviate's pages arrive (memory holds one page, not the
collection)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import weaviate

from indexer.store.collections import CollectionInfo
from indexer.store.export import stream_npy_zip, stream_parquet
from indexer.store.images import ImageStore

ExportFormat = Literal["parquet", "npy"]


@dataclass(frozen=True)
class ExportService:
    weaviate: Callable[[], weaviate.WeaviateClient]
    encodable_collection: Callable[[str], CollectionInfo]  # one of this service's model (else 409)
    dim: Callable[[], int]  # the model's embedding width
    spool_dir: Path  # where the npy zip is spooled

    def stream(self, name: str, format: ExportFormat) -> tuple[Iterator[bytes], str]:
        """The export's chunks, and the file name's suffix (.parquet or .zip)."""
        info = self.encodable_collection(name)
        store = ImageStore(self.weaviate(), info.model_id)
        dim = self.dim()
        if format == "parquet":
            return stream_parquet(store, name, dim), ".parquet"
        return stream_npy_zip(store, name, dim, self.spool_dir), ".zip"
