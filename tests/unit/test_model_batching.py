"""The encoder's batch schedule: one short first batch per lane, then full batches, covering every item
once and in order."""

from __future__ import annotations

import pytest

from indexer.model.batching import FIRST_BATCH, batch_size_after, index_batches


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
