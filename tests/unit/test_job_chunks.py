from indexer.jobs.store import chunks


def test_chunks_split_a_plan() -> None:
    assert chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunks(0, 2) == []


def test_chunks_of_appended_items_start_at_the_old_total() -> None:
    # 3 items appended to a plan that held 7: the plan's indices 7, 8 and 9
    assert chunks(3, 2, first=7) == [(7, 9), (9, 10)]
