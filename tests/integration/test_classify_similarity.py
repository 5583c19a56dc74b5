"""The similarity network (neighbours, near-duplicate groups, edge lists) and embedding exports."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from indexer.errors import InvalidInput
from indexer.media.decode import decode_image
from indexer.services.backends import Backends
from indexer.services.similarity import SimilarityService
from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.classify_helpers import error_of, indexed_collection, vectors_of
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


def reencoded(data: bytes, quality: int) -> bytes:
    pixels = decode_image(data, 10**8).pixels
    ok, out = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return bytes(out.tobytes())


@pytest.fixture(scope="module")
def net(api: Api, settings: Settings) -> dict[str, Any]:
    originals = {f"s{i}.jpg": make_image(1100 + i) for i in range(6)}
    # near-duplicates: s0 twice more at other JPEG qualities, s3 once more
    files = {
        **originals,
        "s0-q60.jpg": reencoded(originals["s0.jpg"], 60),
        "s0-q40.jpg": reencoded(originals["s0.jpg"], 40),
        "s3-q50.jpg": reencoded(originals["s3.jpg"], 50),
    }
    name, ids = indexed_collection(api, "sim", files)
    order = sorted(files)
    vectors = vectors_of(settings, [ids[f] for f in order])
    return {"name": name, "ids": ids, "order": order, "vectors": vectors}


def hand_pairs(vectors: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    sims = vectors @ vectors.T
    n = len(vectors)
    return {(i, j): float(sims[i, j]) for i in range(n) for j in range(i + 1, n) if sims[i, j] >= threshold}


def threshold_between(vectors: np.ndarray) -> float:
    """A threshold that separates the re-encoded copies from the distinct images (checked, not assumed)."""
    sims = np.sort((vectors @ vectors.T)[np.triu_indices(len(vectors), 1)])[::-1]
    gaps = sims[:-1] - sims[1:]
    k = int(np.argmax(gaps[:6]))  # the widest gap among the strongest pairs
    return float((sims[k] + sims[k + 1]) / 2)


def test_similar_lists_neighbours_best_first_without_the_image(api: Api, net: dict[str, Any]) -> None:
    v, ids, order = net["vectors"], net["ids"], net["order"]
    i = order.index("s3.jpg")
    response = api.get(f"/images/{ids['s3.jpg']}/similar?limit=4")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = [order[j] for j in np.argsort(-(v @ v[i])) if j != i][:4]
    assert [r["filename"] for r in results] == expected
    assert results[0]["filename"] == "s3-q50.jpg"
    assert results[0]["score"] == pytest.approx(float(v[i] @ v[order.index("s3-q50.jpg")]), abs=1e-5)
    assert api.get("/images/00000000-0000-0000-0000-000000000000/similar").status_code == 404


def test_duplicate_groups_are_components_above_the_threshold(api: Api, net: dict[str, Any]) -> None:
    v, order = net["vectors"], net["order"]
    threshold = threshold_between(v)
    pairs = hand_pairs(v, threshold)
    # union-find by hand over the pairs
    group = list(range(len(v)))
    for a, b in pairs:
        ga, gb = group[a], group[b]
        group = [min(ga, gb) if g in (ga, gb) else g for g in group]
    expected = sorted(
        (sorted(order[m] for m in range(len(v)) if group[m] == g) for g in set(group) if group.count(g) > 1),
        key=lambda members: (-len(members), members),
    )
    assert expected == [["s0-q40.jpg", "s0-q60.jpg", "s0.jpg"], ["s3-q50.jpg", "s3.jpg"]]
    response = api.get(f"/collections/{net['name']}/duplicates?threshold={threshold}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_groups"] == 2 and body["images"] == 9
    assert [sorted(m["filename"] for m in g["members"]) for g in body["groups"]] == expected
    first = body["groups"][0]
    in_first = [s for (a, b), s in pairs.items() if group[a] == group[order.index("s0.jpg")]]
    assert first["min_score"] == pytest.approx(min(in_first), abs=1e-5)
    assert first["max_score"] == pytest.approx(max(in_first), abs=1e-5)
    page = api.get(f"/collections/{net['name']}/duplicates?threshold={threshold}&limit=1&offset=1").json()
    assert [sorted(m["filename"] for m in g["members"]) for g in page["groups"]] == expected[1:]
    bad = api.get(f"/collections/{net['name']}/duplicates?threshold=2")
    assert bad.status_code == 400


def test_edge_list_csv_and_json(api: Api, net: dict[str, Any]) -> None:
    v, ids, order = net["vectors"], net["ids"], net["order"]
    threshold = float(np.median((v @ v.T)[np.triu_indices(len(v), 1)]))
    expected = {
        frozenset((ids[order[a]], ids[order[b]])): s for (a, b), s in hand_pairs(v, threshold).items()
    }
    response = api.get(f"/collections/{net['name']}/edges.csv?threshold={threshold}")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    got = {frozenset((r["source"], r["target"])): float(r["score"]) for r in rows}
    assert set(got) == set(expected) and len(rows) == len(expected)
    for key, score in got.items():
        assert score == pytest.approx(expected[key], abs=1e-5)
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    as_json = api.get(f"/collections/{net['name']}/edges?threshold={threshold}").json()
    assert as_json["threshold"] == threshold and as_json["total"] == len(expected)
    assert as_json["truncated"] is False and len(as_json["edges"]) == len(expected)
    assert {frozenset((e["source"], e["target"])) for e in as_json["edges"]} == set(expected)
    top = api.get(f"/collections/{net['name']}/edges?threshold={threshold}&limit=2").json()
    assert top["truncated"] is True and top["edges"] == as_json["edges"][:2]
    assert api.get(f"/collections/{net['name']}/edges?threshold=-1&limit=0").status_code == 400


def test_export_parquet_and_npy_hold_ids_metadata_and_vectors(api: Api, net: dict[str, Any]) -> None:
    v, ids, order = net["vectors"], net["ids"], net["order"]
    by_id = {ids[f]: (f, v[i]) for i, f in enumerate(order)}
    response = api.get(f"/collections/{net['name']}/export?format=parquet")
    assert response.status_code == 200, response.text
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 9 and table.schema.metadata[b"model_id"] == b"tiny-test-clip"
    rows = table.to_pylist()
    for row in rows:
        filename, vector = by_id[row["id"]]
        assert row["filename"] == filename and row["collection"] == net["name"]
        assert np.asarray(row["vector"], np.float32) == pytest.approx(vector, abs=1e-7)
        assert json.loads(row["metadata"]) == {}
    response = api.get(f"/collections/{net['name']}/export?format=npy")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith(net["name"] + ".zip")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        vectors = np.load(io.BytesIO(archive.read("vectors.npy")))
        items = json.loads(archive.read("items.json"))
    assert vectors.shape == (9, 32) and vectors.dtype == np.float32
    assert items["model_id"] == "tiny-test-clip" and items["count"] == 9
    for item, vector in zip(items["items"], vectors, strict=True):
        filename, expected = by_id[item["id"]]
        assert item["filename"] == filename and vector == pytest.approx(expected, abs=1e-7)
    bad = api.get(f"/collections/{net['name']}/export?format=xlsx")
    assert bad.status_code == 400
    missing = api.get("/collections/no-such-collection/export")
    assert missing.status_code == 404 and "unknown collection" in error_of(missing)


# The path of large collections: one nearest-neighbour query per image through Weaviate (forced here
# by SIMILARITY_EXACT_MAX_IMAGES=0), against the exact answer of the API and of numpy by hand.


@pytest.fixture()
def neighbour_service(settings: Settings) -> Iterator[Callable[..., SimilarityService]]:
    opened: list[Backends] = []

    def build(**changes: Any) -> SimilarityService:
        backends = Backends(settings.model_copy(update={"similarity_exact_max_images": 0, **changes}))
        opened.append(backends)
        return SimilarityService(backends)

    yield build
    for backends in opened:
        backends.close()


def test_neighbour_path_finds_the_exact_groups_and_edges(
    api: Api, net: dict[str, Any], neighbour_service: Callable[..., SimilarityService]
) -> None:
    v, ids, order, name = net["vectors"], net["ids"], net["order"], net["name"]
    service = neighbour_service(similarity_neighbours=8)  # room for every other image: nothing cut
    threshold = threshold_between(v)
    exact = api.get(f"/collections/{name}/duplicates?threshold={threshold}").json()
    page = service.duplicates(name, threshold, limit=20, offset=0)
    assert (page.total_groups, page.images) == (exact["total_groups"], exact["images"]) == (2, 9)
    for got, want in zip(page.groups, exact["groups"], strict=True):
        assert [f for _, f in got.members] == [m["filename"] for m in want["members"]]
        assert [i for i, _ in got.members] == [m["id"] for m in want["members"]]
        assert got.min_score == pytest.approx(want["min_score"], abs=1e-4)
        assert got.max_score == pytest.approx(want["max_score"], abs=1e-4)

    median = float(np.median((v @ v.T)[np.triu_indices(len(v), 1)]))
    by_hand = {frozenset((ids[order[a]], ids[order[b]])): s for (a, b), s in hand_pairs(v, median).items()}
    edges = service.edges(name, median)
    assert {frozenset((a, b)) for a, b, _ in edges} == set(by_hand) and len(edges) == len(by_hand)
    for a, b, score in edges:
        assert score == pytest.approx(by_hand[frozenset((a, b))], abs=1e-4)
    assert [s for _, _, s in edges] == sorted((s for _, _, s in edges), reverse=True)
    # each pair is oriented as the exact path orients it (the collection's sha256 order)
    exact_edges = api.get(f"/collections/{name}/edges?threshold={median}").json()["edges"]
    assert {(a, b) for a, b, _ in edges} == {(e["source"], e["target"]) for e in exact_edges}


def test_neighbour_path_keeps_the_nearest_neighbours_of_each_image(
    net: dict[str, Any], neighbour_service: Callable[..., SimilarityService]
) -> None:
    v, ids, order, name = net["vectors"], net["ids"], net["order"], net["name"]
    # every pair reaches -1, but each image asks for its one nearest neighbour only: at most one pair per
    # image (the exact path would list all 36), and each image's nearest is among them
    edges = neighbour_service(similarity_neighbours=1).edges(name, -1.0)
    pairs = {frozenset((a, b)) for a, b, _ in edges}
    assert len(v) // 2 <= len(pairs) <= len(v) < len(v) * (len(v) - 1) // 2
    sims = v @ v.T
    np.fill_diagonal(sims, -2)
    for i, filename in enumerate(order):
        nearest = order[int(np.argmax(sims[i]))]
        assert frozenset((ids[filename], ids[nearest])) in pairs, filename


def test_similarity_refuses_a_collection_above_its_cap(
    net: dict[str, Any], neighbour_service: Callable[..., SimilarityService]
) -> None:
    service = neighbour_service(similarity_max_images=5)
    with pytest.raises(InvalidInput, match="SIMILARITY_MAX_IMAGES"):
        service.duplicates(net["name"], 0.9, limit=20, offset=0)
