"""Search over HTTP against the real stack (tiny random model: results are checked mechanically)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def indexed(api: Api) -> dict[str, Any]:
    name = new_collection(api, "search")
    images = {f"p{i}.jpg": make_image(600 + i) for i in range(12)}
    tagged = dict(list(images.items())[:4])
    rest = dict(list(images.items())[4:])
    wait_job(
        api,
        upload(api, name, list(tagged.items()), tags="red,fav", metadata='{"year": 2021, "cam": "a"}')[
            "job_id"
        ],
    )
    wait_job(
        api,
        upload(api, name, list(rest.items()), tags="blue", metadata='{"year": 2023, "cam": "b"}')["job_id"],
    )
    return {"name": name, "images": images, "tagged": tagged}


def test_image_search_by_upload_finds_the_same_image_first(api: Api, indexed: dict[str, Any]) -> None:
    filename, data = list(indexed["images"].items())[5]
    response = api.post(
        "/search/image",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"collection": indexed["name"], "limit": "3"},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["filename"] == filename
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert results[0]["thumbnail_url"] == f"/images/{results[0]['id']}/thumbnail"
    assert len(results) == 3 and results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_image_search_by_stored_id(api: Api, indexed: dict[str, Any]) -> None:
    first = api.post("/search/text", json={"collection": indexed["name"], "query": "x", "limit": 1}).json()
    image_id = first["results"][0]["id"]
    response = api.post(
        "/search/image", json={"collection": indexed["name"], "image_id": image_id, "limit": 2}
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == image_id


def test_text_search_pagination_and_cache(api: Api, indexed: dict[str, Any]) -> None:
    query = {"collection": indexed["name"], "query": "a photo of a cat", "limit": 5}
    first = api.post("/search/text", json=query).json()
    again = api.post("/search/text", json=query).json()
    assert again["cache_hit"] is True
    assert [r["id"] for r in first["results"]] == [r["id"] for r in again["results"]]
    page2 = api.post("/search/text", json={**query, "offset": 5}).json()
    everything = api.post("/search/text", json={**query, "limit": 12}).json()
    ids = [r["id"] for r in everything["results"]]
    assert ids[:5] == [r["id"] for r in first["results"]] and ids[5:10] == [r["id"] for r in page2["results"]]
    scores = [r["score"] for r in everything["results"]]
    assert scores == sorted(scores, reverse=True)


def test_weighted_positive_and_negative_queries(api: Api, indexed: dict[str, Any]) -> None:
    body = {
        "collection": indexed["name"],
        "positive": [{"text": "dog", "weight": 2}, {"text": "beach"}],
        "negative": [{"text": "night"}],
        "limit": 4,
    }
    response = api.post("/search/text", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 4


def test_filters_on_tags_metadata_and_dates(api: Api, indexed: dict[str, Any]) -> None:
    base = {"collection": indexed["name"], "query": "x", "limit": 50}
    red = api.post("/search/text", json={**base, "filters": {"tags": ["red", "fav"]}}).json()["results"]
    assert {r["filename"] for r in red} == set(indexed["tagged"])
    by_meta = api.post("/search/text", json={**base, "filters": {"metadata": {"year": 2023}}}).json()[
        "results"
    ]
    assert len(by_meta) == 8 and all(r["metadata"]["year"] == 2023 for r in by_meta)
    future = api.post("/search/text", json={**base, "filters": {"created_after": "2200-01-01T00:00:00Z"}})
    assert future.json()["results"] == []
    past = api.post("/search/text", json={**base, "filters": {"created_before": "2200-01-01T00:00:00Z"}})
    assert len(past.json()["results"]) == 12
    since_2000 = api.post("/search/text", json={**base, "filters": {"created_after": "2000-01-01T00:00:00Z"}})
    assert len(since_2000.json()["results"]) == 12
    wrapped = api.post("/search/text", json={**base, "filters": {"created_after": "2999-01-01T00:00:00Z"}})
    assert wrapped.status_code == 400 and "1678 and 2261" in wrapped.text


def test_min_score_then_sort_by_metadata(api: Api, indexed: dict[str, Any]) -> None:
    data = next(iter(indexed["images"].values()))
    everything = api.post(
        "/search/image",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"collection": indexed["name"], "limit": "50"},
    ).json()["results"]
    cut = sorted(r["score"] for r in everything)[len(everything) // 2]
    response = api.post(
        "/search/image",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={
            "collection": indexed["name"],
            "limit": "50",
            "min_score": str(cut),
            "sort_by": "-metadata.year",
        },
    )
    results = response.json()["results"]
    assert results and all(r["score"] >= cut - 1e-6 for r in results)
    assert len(results) == sum(1 for r in everything if r["score"] >= cut - 1e-6)
    years = [r["metadata"]["year"] for r in results]
    assert years == sorted(years, reverse=True)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/search/text", {"collection": "x", "query": "a", "image_id": "b"}, 400, "validation"),
        ("/search/text", {"collection": "x"}, 400, "validation"),
        ("/search/text", {"collection": "nope-nope", "query": "a"}, 404, "unknown collection"),
        ("/search/image", {"collection": "x", "query": "a", "image_id": "b"}, 400, "validation"),
        ("/search/image", {"collection": "SEARCH"}, 400, "image"),
    ],
)
def test_search_bad_input(
    api: Api, indexed: dict[str, Any], path: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    body = {**body, "collection": indexed["name"]} if body["collection"] in {"x", "SEARCH"} else body
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_limit_over_maximum_and_text_plus_image(api: Api, indexed: dict[str, Any]) -> None:
    over = api.post("/search/text", json={"collection": indexed["name"], "query": "a", "limit": 100000})
    assert over.status_code == 400 and "over the maximum" in over.json()["error"]["message"]
    data = next(iter(indexed["images"].values()))
    both = api.post(
        "/search/image",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"collection": indexed["name"], "image_id": "abc"},
    )
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]


def test_delete_one_and_delete_by_filter(api: Api) -> None:
    name = new_collection(api)
    wait_job(
        api,
        upload(api, name, [("k1.jpg", make_image(701)), ("k2.jpg", make_image(702))], tags="keep")["job_id"],
    )
    wait_job(
        api,
        upload(api, name, [("d1.jpg", make_image(703)), ("d2.jpg", make_image(704))], tags="drop")["job_id"],
    )
    gone = api.post("/images/delete", json={"collection": name, "filters": {"tags": ["drop"]}})
    assert gone.json() == {"deleted": 2}
    left = api.post("/search/text", json={"collection": name, "query": "x"}).json()["results"]
    assert {r["filename"] for r in left} == {"k1.jpg", "k2.jpg"}
    assert api.delete(f"/images/{left[0]['id']}").status_code == 204
    assert api.get(f"/images/{left[0]['id']}").status_code == 404
    assert api.get(f"/collections/{name}").json()["count"] == 1


@pytest.mark.parametrize("path", ["/images/S", "/images/S/thumbnail", "/images/not-a-uuid/file"])
def test_malformed_image_id_is_400(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 400 and "malformed image id" in response.json()["error"]["message"]
    assert api.delete("/images/S").status_code == 400
