"""The Weaviate options of a deployment that the store applies (consistency of reads and writes,
replication and vector compression of new collections). They come with the client: `connect` records
the options of the settings it was given, so the store never reads the environment itself; a client
made elsewhere (a test's own) gets the settings' defaults."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import weaviate
from weaviate.classes.config import ConsistencyLevel

from indexer.settings import Settings

Compression = Literal["none", "rq8", "rq1", "sq", "bq", "pq"]


@dataclass(frozen=True)
class StoreOptions:
    consistency: Literal["ONE", "QUORUM", "ALL"]
    replication_factor: int
    vector_compression: Compression

    @classmethod
    def of(cls, settings: Settings) -> StoreOptions:
        return cls(
            consistency=settings.weaviate_consistency,
            replication_factor=settings.weaviate_replication_factor,
            vector_compression=settings.weaviate_vector_compression,
        )

    @property
    def consistency_level(self) -> ConsistencyLevel:
        return ConsistencyLevel[self.consistency]


DEFAULTS = StoreOptions.of(Settings.model_construct())  # the settings' defaults; no environment read
_BY_CLIENT: weakref.WeakKeyDictionary[weaviate.WeaviateClient, StoreOptions] = weakref.WeakKeyDictionary()


def bind(client: weaviate.WeaviateClient, settings: Settings) -> weaviate.WeaviateClient:
    """Record the options of ``settings`` for this client; returns the client."""
    _BY_CLIENT[client] = StoreOptions.of(settings)
    return client


def options_of(client: weaviate.WeaviateClient) -> StoreOptions:
    return _BY_CLIENT.get(client, DEFAULTS)
