"""The similarity-network use cases of a collection: groups of near-duplicates with their statistics,
and the edge list (every pair at or above a cosine threshold, strongest first). The neighbours of one
image are a search (`SearchService.similar`). The pure parts are in indexer/search/similarity.py."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.search.similarity import MAX_PAIRS, SimilarityGraph, similarity_graph
from indexer.services.backends import Collections

__all__ = ["MAX_PAIRS", "SimilarityService"]

Pair = tuple[str, str, float]  # (source id, target id, cosine)


@dataclass(frozen=True)
class DuplicateGroup:
    size: int
    min_score: float  # the weakest link inside the group
    max_score: float
    members: list[tuple[str, str]]  # (image id, filename)


@dataclass(frozen=True)
class DuplicatesPage:
    total_groups: int
    images: int  # in the collection
    groups: list[DuplicateGroup]


@dataclass
class SimilarityService:
    backends: Collections

    def duplicates(self, name: str, threshold: float, limit: int, offset: int) -> DuplicatesPage:
        """Connected components of the pairs at or above ``threshold``, largest first, one page."""
        data = self._graph(name, threshold)
        groups = data.components()
        group_of = {m: g for g, members in enumerate(groups) for m in members}
        low = [1.0] * len(groups)
        high = [-1.0] * len(groups)
        for a, s in zip(data.rows.tolist(), data.scores.tolist(), strict=True):
            g = group_of[a]
            low[g], high[g] = min(low[g], s), max(high[g], s)
        page = range(offset, min(len(groups), offset + limit))
        return DuplicatesPage(
            total_groups=len(groups),
            images=len(data.ids),
            groups=[
                DuplicateGroup(
                    size=len(groups[g]),
                    min_score=round(low[g], 6),
                    max_score=round(high[g], 6),
                    members=[(data.ids[m], data.filenames[m]) for m in groups[g]],
                )
                for g in page
            ],
        )

    def edges(self, name: str, threshold: float) -> list[Pair]:
        """Every pair at or above ``threshold``, strongest first."""
        return list(self._graph(name, threshold).edges())

    def _graph(self, name: str, threshold: float) -> SimilarityGraph:
        """The collection's pairs at or above ``threshold``: exact for a small collection, through
        Weaviate's nearest-neighbour queries for a large one (NotFound for an unknown collection;
        refused above SIMILARITY_MAX_IMAGES)."""
        b = self.backends
        info = b.collection(name)
        settings = b.settings
        return similarity_graph(
            b.image_store(info),
            info.name,
            threshold,
            exact_max_images=settings.similarity_exact_max_images,
            max_images=settings.similarity_max_images,
            neighbours=settings.similarity_neighbours,
            concurrency=settings.similarity_query_concurrency,
        )
