"""The encoder's one batching path: a stream of batches through the image session, their preparation
overlapping inference.

While ONNX Runtime runs batch k (and, with several lanes, batch k+1 beside it), the preparation threads
prepare the next one, and the caller's iterator may be reading the one after. Each lane's first batch is
short (``FIRST_BATCH``), so that inference starts after a few images rather than a whole batch: that first
preparation is the only one the stream cannot hide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from itertools import pairwise
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from indexer.errors import ClipsearchError
from indexer.model.pools import EncoderPools

T = TypeVar("T")
Outcomes = list[NDArray[np.float32] | ClipsearchError]  # per item of a batch: its vector or its error
# a batch, its input tensor, and the futures of its items' preparation
_Prepared = tuple[Sequence[T], NDArray[np.float32], list[Future[None]]]

FIRST_BATCH = 4
_PENDING = np.empty(0, dtype=np.float32)  # a placeholder until the batch's vectors exist


def batch_size_after(handed: int, *, lanes: int, batch_size: int) -> int:
    """The size of the next batch after ``handed`` batches: short (FIRST_BATCH) for the first batch of
    each lane, so that every lane starts within a few images (with one short batch, the second lane idled
    while the first full batch was prepared), then ``batch_size``."""
    return min(FIRST_BATCH, batch_size) if handed < lanes else batch_size


def batch_sizes(n: int, *, lanes: int, batch_size: int) -> list[int]:
    """The sizes of the batches that ``n`` items go in: short first batches (``batch_size_after``), full
    ones, and a tail split evenly over the lanes. With ``lanes`` lanes running side by side, the last
    batches decide when the stream ends: full batches to the end leave one lane on the last full batch
    while the others idle (on 2 cores, 128 items in 4, 4, 7 x 16 and 8 kept one core idle for about half a
    second at every chunk's end: 3 to 4 % of an ingest of small photos). So the last ``lanes x
    batch_size`` items or fewer go in ``lanes`` near-equal batches, which the lanes finish together."""
    sizes: list[int] = []
    left = n
    while left > 0 and len(sizes) < lanes:
        sizes.append(min(left, max(1, batch_size_after(len(sizes), lanes=lanes, batch_size=batch_size))))
        left -= sizes[-1]
    full = max(1, batch_size)
    while left > lanes * full:
        sizes.append(full)
        left -= full
    if left > full and lanes > 1:
        sizes.extend(left // lanes + (1 if i < left % lanes else 0) for i in range(lanes))
    else:
        while left > 0:
            sizes.append(min(left, full))
            left -= sizes[-1]
    return sizes


def planned_size(plan: Sequence[int], handed: int, batch_size: int) -> int:
    """The size of the batch after ``handed`` batches under ``plan`` (``batch_sizes``); full past its end
    (a reader whose items fail or whose byte budget cuts batches short may hand more batches than
    planned)."""
    return plan[handed] if handed < len(plan) else batch_size


def index_batches(n: int, size_after: Callable[[int], int]) -> Iterator[range]:
    """range(n) in consecutive batches, the k-th of ``size_after(k)`` items."""
    start, handed = 0, 0
    while start < n:
        end = min(n, start + max(1, size_after(handed)))
        yield range(start, end)
        start, handed = end, handed + 1


def stream(
    batches: Iterable[Sequence[T]],
    prepare: Callable[[T, NDArray[np.float32]], None],
    infer: Callable[[NDArray[np.float32]], NDArray[np.float32]],
    *,
    item_shape: tuple[int, ...],
    pools: EncoderPools,
) -> Iterator[tuple[Sequence[T], Outcomes]]:
    """Yield each batch, in order, with, per item, its vector or its error.

    ``prepare(item, slot)`` writes the item's model input (``item_shape``) into ``slot`` in a preparation
    thread; a ClipsearchError it raises fails that item alone. ``infer(tensor)`` runs the prepared items
    of a batch, in a lane. Only the batches in inference (one per lane) and the one being prepared hold
    tensors, so memory depends on the batch size and the lanes, not on how many batches ``batches`` yields.
    """
    prep = pools.prep()
    lanes = pools.lane_pool()

    def submit(batch: Sequence[T]) -> _Prepared[T]:
        tensor = np.empty((len(batch), *item_shape), dtype=np.float32)
        return batch, tensor, [prep.submit(prepare, item, tensor[j]) for j, item in enumerate(batch)]

    def run(prepared: _Prepared[T]) -> Outcomes:
        batch, tensor, futures = prepared
        outcomes: Outcomes = []
        ok: list[int] = []
        for j, fut in enumerate(futures):
            try:
                fut.result()
                ok.append(j)
                outcomes.append(_PENDING)
            except ClipsearchError as exc:
                outcomes.append(exc)
        if ok:
            vectors = infer(tensor if len(ok) == len(batch) else tensor[ok])
            for row, j in enumerate(ok):
                outcomes[j] = vectors[row]
        return outcomes

    source = iter(batches)
    first = next(source, None)
    current = submit(first) if first is not None else None
    running: deque[tuple[Sequence[T], list[Future[Outcomes]]]] = deque()
    try:
        while current is not None or running:
            if current is not None:
                # take the next batch (the pool is still preparing this one) and queue its preparation
                following = next(source, None)
                upcoming = submit(following) if following is not None else None
                if lanes is None:
                    outcomes = run(current)
                    batch = current[0]
                    current = upcoming
                    yield batch, outcomes
                    continue
                # The last batch goes in slices, so that every lane works on it rather than one lane
                # alone while the others idle (on 2 cores half a batch of a core, at every task's end).
                parts = _slices(len(current[0]), 2 * pools.lanes) if upcoming is None else [None]
                running.append(
                    (
                        current[0],
                        [
                            lanes.submit(run, current if part is None else _sliced(current, part))
                            for part in parts
                        ],
                    )
                )
                current = upcoming
                if current is not None and len(running) < pools.lanes:
                    continue  # a lane is free: start the next batch before waiting on the oldest
            batch, futures = running.popleft()
            yield batch, [outcome for future in futures for outcome in future.result()]
    finally:
        if current is not None:  # the consumer stopped early: let the queued preparation finish
            for fut in current[2]:
                fut.cancel()
        wait([future for _, futures in running for future in futures])  # they hold their tensors


def _slices(n: int, pieces: int) -> list[slice]:
    """``pieces`` consecutive slices of range(n) (fewer for a short n, none empty)."""
    pieces = max(1, min(pieces, n))
    bounds = [round(i * n / pieces) for i in range(pieces + 1)]
    return [slice(lo, hi) for lo, hi in pairwise(bounds)]


def _sliced(prepared: _Prepared[T], part: slice) -> _Prepared[T]:
    batch, tensor, futures = prepared
    return batch[part], tensor[part], futures[part]
