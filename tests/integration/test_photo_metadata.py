"""Photo metadata over HTTP against the real stack: EXIF written into JPEG, HEIC and TIFF files (GPS points
of known cities, offsets, a local time, a missing date, none at all), a server-side folder's file dated by
its mtime; the stored properties, every photo filter, `near`, sort by taken_at, the facets, and the
hybrid and keyword modes of a text search."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from weaviate.classes.config import Configure

from indexer.settings import Settings
from indexer.store.connection import connect
from indexer.store.images import ImageRecord, ImageStore, to_properties
from indexer.store.schema import (
    IMAGE_PROPERTIES,
    PHOTO_PROPERTIES,
    ensure_image_collection,
    image_collection_name,
    image_uuid,
)
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from tests.photogen import NEW_YORK, PARIS, SYDNEY, TOKYO, Shot, photo, plain

pytestmark = pytest.mark.integration

VERSAILLES = (48.8049, 2.1204)  # 17 km from Paris
IPHONE = Shot(
    taken="2021:12:24 18:00:00",
    offset="+09:00",
    make="Apple",
    model="iPhone 12",
    lens="iPhone 12 back dual wide camera",
    iso=64,
    gps=TOKYO,
    altitude=40.0,
)
NIKON = Shot(
    taken="2020:01:15 08:00:00", offset=None, make="NIKON CORPORATION", model="NIKON Z 6", gps=SYDNEY
)
FILES = {
    "paris.jpg": photo(Shot(), "jpeg", seed=1),
    "tokyo.heic": photo(IPHONE, "heic", seed=2),
    "sydney.tiff": photo(NIKON, "tiff", seed=3),
    "versailles.jpg": photo(Shot(taken="2019:07:14 10:00:00", gps=VERSAILLES), "jpeg", seed=4),
    "undated.jpg": photo(Shot(taken=None, gps=NEW_YORK), "jpeg", seed=5),
    "plain.jpg": plain("jpeg", seed=6),
}
FOLDER_MTIME = datetime(2018, 8, 9, 10, 11, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def photos(api: Api, folder_root: Path) -> dict[str, Any]:
    name = new_collection(api, "photos")
    report = wait_job(api, upload(api, name, list(FILES.items()))["job_id"])
    assert report["state"] == "completed" and report["done"] == len(FILES), report
    folder = folder_root / "photo-metadata"
    folder.mkdir()
    (folder / "scan.jpg").write_bytes(plain("jpeg", seed=7))
    os.utime(folder / "scan.jpg", (FOLDER_MTIME.timestamp(), FOLDER_MTIME.timestamp()))
    response = api.post(f"/collections/{name}/folder", json={"path": str(folder)})
    assert response.status_code == 202, response.text
    assert wait_job(api, response.json()["job_id"])["state"] == "completed"
    return {"name": name, "hits": {_base(h): h for h in _search(api, name, limit=50)}}


def _base(hit: dict[str, Any]) -> str:
    """The file's own name (a folder file's `filename` is its path on the server)."""
    return Path(hit["filename"]).name


def _search(
    api: Api, name: str, filters: dict[str, Any] | None = None, **options: Any
) -> list[dict[str, Any]]:
    body = {"collection": name, "query": "a photo", "limit": 50, "filters": filters or {}, **options}
    response = api.post("/search/text", json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _names(api: Api, name: str, filters: dict[str, Any]) -> set[str]:
    return {_base(hit) for hit in _search(api, name, filters)}


def test_stored_properties(api: Api, photos: dict[str, Any]) -> None:
    hits = photos["hits"]
    assert set(hits) == {*FILES, "scan.jpg"}
    paris = api.get(f"/images/{hits['paris.jpg']['id']}").json()
    assert paris["taken_at"].startswith("2019-06-01T10:30:00") and paris["taken_at_offset"] == "+02:00"
    assert paris["taken_at_local"] is False and paris["taken_at_source"] == "exif"
    assert (paris["camera"], paris["camera_make"], paris["lens"]) == (
        "Canon EOS R5",
        "Canon",
        "RF24-105mm F4 L IS USM",
    )
    assert (paris["focal_length_mm"], paris["exposure_s"], paris["iso"], paris["altitude"]) == (
        50,
        0.004,
        200,
        35.5,
    )
    assert paris["location"] == {
        "latitude": pytest.approx(PARIS[0], abs=1e-4),
        "longitude": pytest.approx(PARIS[1], abs=1e-4),
    }
    assert (paris["country"], paris["country_code"], paris["region"], paris["city"]) == (
        "France",
        "FR",
        "Île-de-France",
        "Paris",
    )
    tokyo = hits["tokyo.heic"]  # a search hit carries the same fields
    assert tokyo["format"] == "heic" and tokyo["taken_at"].startswith("2021-12-24T09:00:00")
    assert (tokyo["camera"], tokyo["country"], tokyo["region"]) == ("Apple iPhone 12", "Japan", "Tokyo")
    sydney = hits["sydney.tiff"]
    assert sydney["taken_at"].startswith("2020-01-15T08:00:00") and sydney["taken_at_local"] is True
    assert (sydney["camera"], sydney["city"]) == ("NIKON Z 6", "Sydney")
    undated = hits["undated.jpg"]
    assert undated["taken_at"] is None and undated["city"] == "New York City"
    assert hits["plain.jpg"]["taken_at"] is None and hits["plain.jpg"]["location"] is None
    scan = hits["scan.jpg"]
    assert scan["taken_at"].startswith("2018-08-09T10:11:12") and scan["taken_at_source"] == "mtime"


def test_every_filter(api: Api, photos: dict[str, Any]) -> None:
    name = photos["name"]
    assert _names(
        api, name, {"taken_after": "2019-06-01T00:00:00Z", "taken_before": "2020-01-01T00:00:00Z"}
    ) == {
        "paris.jpg",
        "versailles.jpg",
    }
    # an offset in the bound: 2019-06-01T12:30+02:00 is 10:30 UTC
    assert _names(
        api, name, {"taken_after": "2019-06-01T12:00:00+02:00", "taken_before": "2019-06-01T12:31:00+02:00"}
    ) == {"paris.jpg"}
    assert _names(api, name, {"taken_before": "2019-01-01T00:00:00"}) == {"scan.jpg"}
    assert _names(api, name, {"taken_after": "2021-01-01T00:00:00Z"}) == {"tokyo.heic"}
    assert _names(api, name, {"camera": "Canon EOS R5"}) == {"paris.jpg", "versailles.jpg", "undated.jpg"}
    assert _names(api, name, {"lens": "iPhone 12 back dual wide camera"}) == {"tokyo.heic"}
    assert _names(api, name, {"country": "France"}) == {"paris.jpg", "versailles.jpg"}
    assert _names(api, name, {"country": "jp"}) == {"tokyo.heic"}
    assert _names(api, name, {"city": "Sydney"}) == {"sydney.tiff"}
    assert _names(api, name, {"region": "New York"}) == {"undated.jpg"}
    assert _names(api, name, {"city": "Paris", "camera": "NIKON Z 6"}) == set()
    assert _names(api, name, {"country": "France", "taken_after": "2019-07-01T00:00:00Z"}) == {
        "versailles.jpg"
    }


def test_near(api: Api, photos: dict[str, Any]) -> None:
    name = photos["name"]
    lat, lon = PARIS
    assert _names(api, name, {"near": {"lat": lat, "lon": lon, "km": 5}}) == {"paris.jpg"}
    assert _names(api, name, {"near": {"lat": lat, "lon": lon, "km": 30}}) == {"paris.jpg", "versailles.jpg"}
    assert _names(api, name, {"near": {"lat": 35.0, "lon": 139.0, "km": 150}}) == {"tokyo.heic"}
    bad = api.post(
        "/search/text",
        json={"collection": name, "query": "x", "filters": {"near": {"lat": 95, "lon": 0, "km": 1}}},
    )
    assert bad.status_code == 400


def test_sort_by_taken_at(api: Api, photos: dict[str, Any]) -> None:
    name = photos["name"]
    dated = ["scan.jpg", "paris.jpg", "versailles.jpg", "sydney.tiff", "tokyo.heic"]
    ascending = [_base(h) for h in _search(api, name, sort_by="taken_at")]
    assert ascending[:5] == dated and set(ascending[5:]) == {"undated.jpg", "plain.jpg"}
    descending = [_base(h) for h in _search(api, name, sort_by="-taken_at")]
    assert descending[:5] == dated[::-1] and set(descending[5:]) == {"undated.jpg", "plain.jpg"}


def _browse(api: Api, name: str, filters: dict[str, Any], **options: Any) -> tuple[list[str], int]:
    response = api.post(f"/collections/{name}/images/filter", json={"filters": filters, **options})
    assert response.status_code == 200, response.text
    page = response.json()
    return [_base(i) for i in page["images"]], int(page["total"])


def test_browse_by_filters_without_a_query(api: Api, photos: dict[str, Any]) -> None:
    """The page's pickers with an empty search box: every image that matches, latest taken first (no
    vector query), with how many match, paged."""
    name = photos["name"]
    dated = ["scan.jpg", "paris.jpg", "versailles.jpg", "sydney.tiff", "tokyo.heic"]
    names, total = _browse(api, name, {})
    assert total == len(FILES) + 1 and names[:5] == dated[::-1], names
    assert set(names[5:]) == {"undated.jpg", "plain.jpg"}
    assert _browse(api, name, {}, sort_by="taken_at")[0][-5:] == dated
    assert _browse(api, name, {"country": "France"}) == (["versailles.jpg", "paris.jpg"], 2)
    assert _browse(api, name, {"camera": "Canon EOS R5"}, limit=1, offset=1) == (["paris.jpg"], 3)
    period = {"taken_after": "2019-01-01T00:00:00Z", "taken_before": "2021-01-01T00:00:00Z"}
    assert _browse(api, name, period) == (["sydney.tiff", "versailles.jpg", "paris.jpg"], 3)
    assert _browse(api, name, {"city": "Atlantis"}) == ([], 0)
    for body, field in (
        ({"sort_by": "vector"}, "sort_by"),
        ({"limit": 1000, "offset": 9500}, "offset"),
        ({"filters": {"near": {"lat": 95, "lon": 0, "km": 1}}}, "near"),
    ):
        bad = api.post(f"/collections/{name}/images/filter", json=body)
        assert bad.status_code == 400 and field in bad.text, (body, bad.text)
    assert api.post("/collections/no-such-collection/images/filter", json={}).status_code == 404


def test_facets(api: Api, photos: dict[str, Any]) -> None:
    name = photos["name"]
    response = api.get(f"/collections/{name}/facets")
    assert response.status_code == 200, response.text
    facets = response.json()
    assert facets["total"] == 7
    assert facets["years"] == {"2018": 1, "2019": 2, "2020": 1, "2021": 1}
    assert facets["months"] == {"2018-08": 1, "2019-06": 1, "2019-07": 1, "2020-01": 1, "2021-12": 1}
    assert facets["cameras"] == {"Canon EOS R5": 3, "Apple iPhone 12": 1, "NIKON Z 6": 1}
    assert facets["countries"] == {"France": 2, "Australia": 1, "Japan": 1, "United States": 1}
    assert facets["cities"]["Paris"] == 1 and facets["cities"]["Sydney"] == 1
    assert list(facets["cameras"]) == ["Canon EOS R5", "Apple iPhone 12", "NIKON Z 6"]  # most common first
    assert api.get("/collections/no-such-collection/facets").status_code == 404


def test_a_file_name_query_finds_its_file_first_in_hybrid_mode(api: Api) -> None:
    name = new_collection(api, "names")
    files = [(f"IMG_{2001 + i}.jpg", make_image(4000 + i)) for i in range(24)]
    assert wait_job(api, upload(api, name, files)["job_id"])["done"] == len(files)

    def ranked(**options: Any) -> list[str]:
        body = {"collection": name, "query": "IMG_2017", "limit": 24, **options}
        response = api.post("/search/text", json=body)
        assert response.status_code == 200, response.text
        return [hit["filename"] for hit in response.json()["results"]]

    assert ranked(mode="hybrid")[0] == "IMG_2017.jpg"
    assert ranked(mode="hybrid", alpha=0.25)[0] == "IMG_2017.jpg"
    assert ranked(mode="keyword")[0] == "IMG_2017.jpg"
    vector = ranked(mode="vector")  # CLIP alone ranks by the pixels: the name plays no part
    assert len(vector) == 24 and vector == ranked()
    refused = api.post(
        "/search/text", json={"collection": name, "query": "x", "mode": "keyword", "min_score": 0.1}
    )
    assert refused.status_code == 400


def test_an_older_image_collection_gets_the_photo_properties(settings: Settings) -> None:
    """A collection created before photo metadata existed: start-up adds the missing properties, and an
    object stored before them reads back without them."""
    model_id = f"old-model-{uuid.uuid4().hex[:6]}"
    name = image_collection_name(model_id)
    client = connect(settings)
    try:
        old = [p for p in IMAGE_PROPERTIES if p.name not in {q.name for q in PHOTO_PROPERTIES}]
        client.collections.create(name, properties=old, vector_config=Configure.Vectors.self_provided())
        before = ImageRecord(
            id=image_uuid("c", "0" * 64),
            collection="c",
            filename="old.jpg",
            sha256="0" * 64,
            format="jpeg",
            width=1,
            height=1,
            ingested_at=datetime.now(UTC),
        )
        props = {k: v for k, v in to_properties(before).items() if k in {p.name for p in old}}
        client.collections.use(name).data.insert(props, uuid=before.id, vector=[0.1, 0.2])
        assert ensure_image_collection(client, model_id) == name
        have = {p.name for p in client.collections.use(name).config.get().properties}
        assert {p.name for p in PHOTO_PROPERTIES} <= have
        record, _ = ImageStore(client, model_id).get(before.id)
        assert record.taken_at is None and record.location is None and record.camera == ""
    finally:
        client.collections.delete(name)
        client.close()


def test_keywords_find_places_and_cameras(api: Api, photos: dict[str, Any]) -> None:
    name = photos["name"]

    def first(query: str) -> str:
        return _base(_search(api, name, query=query, mode="keyword")[0])

    assert first("Tokyo") == "tokyo.heic"
    assert first("nikon") == "sydney.tiff"
    assert {_base(h) for h in _search(api, name, query="Île-de-France", mode="keyword")} == {
        "paris.jpg",
        "versailles.jpg",
    }
