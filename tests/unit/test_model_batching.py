"""The encoder's batch schedule: one short first batch per lane, then full batches and a tail split over
the lanes, covering every item once and in order."""

from __future__ import annotations

import pytest

from indexer.model.batching import FIRST_BATCH, batch_size_after, batch_sizes, index_batches


@pytest.mark.parametrize(("n", "lanes", "expected"), [(41, 1, [4, 16, 16, 5]), (41, 2, [4, 4, 16, 16, 1])])
def test_index_batches_start_short_on_each_lane_then_run_full(
    n: int, lanes: int, expected: list[int]
) -> None:
    batches = list(index_batches(n, lambda k: batch_size_after(k, lanes=lanes, batch_size=16)))
    assert [len(b) for b in batches] == expected
    assert [i for b in batches for i in b] == list(range(n))


def test_index_batches_of_nothing_and_of_tiny_batch_sizes() -> None:
    assert list(index_batches(0, lambda k: 16)) == []
    assert batch_size_after(0, lanes=1, batch_size=2) == 2 < FIRST_BATCH  # never above the batch size
    assert [len(b) for b in index_batches(3, lambda k: 0)] == [1, 1, 1]  # at least one item a batch


@pytest.mark.parametrize(
    ("n", "lanes", "expected"),
    [
        (128, 2, [4, 4, 16, 16, 16, 16, 16, 16, 12, 12]),  # a chunk: the lanes finish together
        (41, 2, [4, 4, 16, 9, 8]),
        (9, 2, [4, 4, 1]),  # a short tail goes as one batch (the stream slices a last batch over the lanes)
        (60, 3, [4, 4, 4, 16, 16, 16]),
        (70, 3, [4, 4, 4, 16, 14, 14, 14]),
        (41, 1, [4, 16, 16, 5]),  # one lane: nothing to balance
        (3, 2, [3]),
        (0, 2, []),
    ],
)
def test_batch_sizes_split_the_tail_evenly_over_the_lanes(n: int, lanes: int, expected: list[int]) -> None:
    assert batch_sizes(n, lanes=lanes, batch_size=16) == expected


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
def test_batch_sizes_cover_every_item_in_batches_no_larger_than_the_batch_size(lanes: int) -> None:
    for n in range(0, 300):
        sizes = batch_sizes(n, lanes=lanes, batch_size=16)
        assert sum(sizes) == n and all(1 <= s <= 16 for s in sizes), (n, sizes)
        assert all(s <= FIRST_BATCH for s in sizes[:lanes]), (n, sizes)
        tail = sizes[-lanes:]
        if lanes > 1 and n > lanes * FIRST_BATCH + 16:  # a tail of full size: split over every lane
            assert max(tail) - min(tail) <= 1, (n, sizes)
