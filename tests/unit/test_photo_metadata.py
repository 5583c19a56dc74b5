"""The EXIF/XMP parser (indexer/media/exif.py), the offline reverse geocoder (indexer/media/places.py),
the photo fields of an ingested image (indexer/pipeline/photo.py) and the photo filters and options."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from indexer.errors import InvalidInput
from indexer.media import exif
from indexer.media.decoder import PooledDecoder
from indexer.media.places import NOWHERE, place_of
from indexer.model.preprocess import PreprocessConfig
from indexer.pipeline.photo import camera_name, photo_fields
from indexer.search.filters import photo_filters
from indexer.search.requests import SearchFilters, TextSearchRequest
from indexer.sources.items import FolderItem, UrlItem
from tests.formatgen import scene
from tests.photogen import NEW_YORK, PARIS, SYDNEY, TOKYO, Shot, photo, plain


@pytest.mark.parametrize("fmt", ["jpeg", "tiff", "webp", "png", "avif", "heic"])
def test_every_format_gives_the_same_metadata(fmt: str) -> None:
    meta = exif.parse(photo(Shot(), fmt), fmt)
    assert meta.taken_at == datetime(2019, 6, 1, 10, 30, tzinfo=UTC)  # 12:30 at +02:00
    assert (meta.offset, meta.local, meta.source) == ("+02:00", False, "exif")
    assert (meta.camera_make, meta.camera_model) == ("Canon", "Canon EOS R5")
    assert meta.lens == "RF24-105mm F4 L IS USM"
    assert (meta.focal_length_mm, meta.exposure_s, meta.iso) == (50.0, 0.004, 200.0)
    assert meta.latitude == pytest.approx(PARIS[0], abs=1e-6)
    assert meta.longitude == pytest.approx(PARIS[1], abs=1e-6)
    assert meta.altitude == 35.5


def test_negative_offset_south_and_west_and_below_sea_level() -> None:
    meta = exif.parse(photo(Shot(offset="-05:00", gps=NEW_YORK, altitude=-12.0)), "jpeg")
    assert meta.taken_at == datetime(2019, 6, 1, 17, 30, tzinfo=UTC)
    assert meta.offset == "-05:00"
    assert meta.longitude == pytest.approx(NEW_YORK[1], abs=1e-6)
    assert meta.altitude == -12.0
    south = exif.parse(photo(Shot(gps=SYDNEY)), "jpeg")
    assert south.latitude == pytest.approx(SYDNEY[0], abs=1e-6)


def test_without_an_offset_the_time_is_local_and_said_so() -> None:
    meta = exif.parse(photo(Shot(offset=None)), "jpeg")
    assert meta.taken_at == datetime(2019, 6, 1, 12, 30, tzinfo=UTC)  # the wall-clock time, kept as is
    assert (meta.offset, meta.local) == ("", True)


def test_a_missing_date_leaves_the_rest() -> None:
    meta = exif.parse(photo(Shot(taken=None)), "jpeg")
    assert meta.taken_at is None and meta.source == ""
    assert meta.camera_model == "Canon EOS R5" and meta.latitude is not None


def test_the_mtime_is_the_fallback_only_without_a_date() -> None:
    when = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    undated = exif.parse(photo(Shot(taken=None)), "jpeg").with_mtime(when)
    assert undated.taken_at == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert (undated.source, undated.local) == ("mtime", False)
    dated = exif.parse(photo(Shot()), "jpeg").with_mtime(when)
    assert dated.source == "exif" and dated.taken_at is not None and dated.taken_at.year == 2019


def test_no_metadata_and_broken_bytes_give_nothing() -> None:
    assert exif.parse(plain(), "jpeg") is exif.EMPTY
    assert exif.parse(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage", "jpeg") is exif.EMPTY
    assert exif.parse(b"not an image", "heic") is exif.EMPTY
    assert exif.parse(photo(Shot()), "gif") is exif.EMPTY


def test_a_zero_date_and_a_zero_position_are_no_values() -> None:
    meta = exif.parse(photo(Shot(taken="0000:00:00 00:00:00", gps=(0.0, 0.0))), "jpeg")
    assert meta.taken_at is None
    assert meta.latitude is None and meta.longitude is None


def test_the_raw_reader_reads_the_same_tags() -> None:
    # exifread reads the RAWs that Pillow cannot open (CR3, RAF, ORF); a JPEG is the same EXIF structure
    meta = exif.parse(photo(Shot(offset="+09:00", gps=TOKYO)), "cr3")
    assert meta.taken_at == datetime(2019, 6, 1, 3, 30, tzinfo=UTC)
    assert meta.camera_model == "Canon EOS R5" and meta.iso == 200.0
    assert meta.exposure_s == pytest.approx(0.004)
    assert meta.latitude == pytest.approx(TOKYO[0], abs=1e-5)


def test_an_xmp_date_when_exif_has_none() -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'xmp:CreateDate="2020-02-29T23:15:00+01:00"/></rdf:RDF></x:xmpmeta>'
    )
    buf = io.BytesIO()
    Image.fromarray(scene(64, 48)).save(buf, "JPEG", xmp=xmp)
    meta = exif.parse(buf.getvalue(), "jpeg")
    assert meta.taken_at == datetime(2020, 2, 29, 22, 15, tzinfo=UTC)
    assert (meta.offset, meta.source) == ("+01:00", "xmp")


@pytest.mark.parametrize(
    ("position", "country", "region", "city"),
    [
        (PARIS, "France", "Île-de-France", "Paris"),
        (SYDNEY, "Australia", "New South Wales", "Sydney"),
        (NEW_YORK, "United States", "New York", "New York City"),
    ],
)
def test_places_of_known_cities(position: tuple[float, float], country: str, region: str, city: str) -> None:
    place = place_of(*position)
    assert (place.country, place.region, place.city) == (country, region, city)
    assert place.distance_km is not None and place.distance_km < 5


def test_far_from_any_place_there_is_no_city() -> None:
    assert place_of(0.0, -30.0) is NOWHERE  # the middle of the Atlantic
    assert place_of(91.0, 0.0) is NOWHERE
    tokyo = place_of(*TOKYO)
    assert (tokyo.country, tokyo.region) == ("Japan", "Tokyo") and tokyo.city


def test_camera_names_say_the_make_once() -> None:
    assert camera_name("Canon", "Canon EOS R5") == "Canon EOS R5"
    assert camera_name("NIKON CORPORATION", "NIKON Z 6") == "NIKON Z 6"
    assert camera_name("Apple", "iPhone 12") == "Apple iPhone 12"
    assert camera_name("", "X100V") == "X100V"


def test_photo_fields_add_the_place_and_month(tmp_path: Path) -> None:
    meta = exif.parse(photo(Shot(gps=SYDNEY)), "jpeg")
    fields = photo_fields(meta, UrlItem(name="a.jpg", url="https://x/a.jpg"))
    assert fields["city"] == "Sydney" and fields["country_code"] == "AU"
    assert fields["taken_month"] == "2019-06" and fields["camera"] == "Canon EOS R5"
    assert fields["location"] == {"latitude": pytest.approx(SYDNEY[0]), "longitude": pytest.approx(SYDNEY[1])}
    assert photo_fields(exif.parse(plain(), "jpeg"), UrlItem(name="b.jpg", url="https://x/b.jpg")) == {}


def test_a_folder_file_without_a_date_takes_its_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(plain())
    mtime = datetime(2018, 8, 9, 10, 11, 12, tzinfo=UTC).timestamp()
    os.utime(path, (mtime, mtime))
    item = FolderItem(name="a.jpg", path=str(path), root=str(tmp_path))
    fields = photo_fields(exif.parse(path.read_bytes(), "jpeg"), item)
    assert fields["taken_at"] == datetime(2018, 8, 9, 10, 11, 12, tzinfo=UTC)
    assert fields["taken_at_source"] == "mtime" and fields["taken_month"] == "2018-08"


def test_photo_filters_and_their_checks() -> None:
    filters = SearchFilters.model_validate(
        {
            "taken_after": "2019-01-01T00:00:00",
            "taken_before": "2020-01-01T00:00:00Z",
            "camera": "Canon EOS R5",
            "country": "fr",
            "city": "Paris",
            "near": {"lat": 48.85, "lon": 2.35, "km": 10},
        }
    )
    assert len(photo_filters(filters)) == 6
    assert photo_filters(SearchFilters()) == []
    for bad in (
        {"lat": 91, "lon": 0, "km": 1},
        {"lat": 0, "lon": 0, "km": 0},
        {"lat": 0, "lon": 181, "km": 1},
    ):
        with pytest.raises(ValidationError):
            SearchFilters.model_validate({"near": bad})
    with pytest.raises(ValidationError):
        SearchFilters.model_validate({"taken_after": "1500-01-01T00:00:00Z"})


def test_modes_and_the_score_cut() -> None:
    req = TextSearchRequest.model_validate({"collection": "c", "query": "IMG_2041", "mode": "hybrid"})
    assert req.mode == "hybrid" and req.alpha == 0.5 and req.keywords() == "IMG_2041"
    with pytest.raises(ValidationError, match="min_score"):
        TextSearchRequest.model_validate(
            {"collection": "c", "query": "x", "mode": "keyword", "min_score": 0.2}
        )
    with pytest.raises(ValidationError):
        TextSearchRequest.model_validate({"collection": "c", "query": "x", "mode": "fuzzy"})
    with pytest.raises(ValidationError):
        TextSearchRequest.model_validate({"collection": "c", "query": "x", "alpha": 1.5})
    sorted_req = TextSearchRequest.model_validate({"collection": "c", "query": "x", "sort_by": "-taken_at"})
    assert sorted_req.sort_by == "-taken_at"


def test_exposure_fraction_round_trip() -> None:
    meta = exif.parse(photo(Shot(exposure=Fraction(1, 8000))), "jpeg")
    assert meta.exposure_s == pytest.approx(1 / 8000)


def test_metadata_crosses_the_decode_process_boundary_checked() -> None:
    """Read in a limited decode process, the metadata comes back as JSON and is checked like input."""
    meta = exif.parse(photo(Shot(gps=SYDNEY)), "jpeg")
    assert exif.from_json(json.loads(json.dumps(exif.to_json(meta)))) == meta
    assert exif.from_json(exif.to_json(exif.EMPTY)) == exif.EMPTY
    for bad in (
        {**exif.to_json(meta), "iso": "a lot"},
        {**exif.to_json(meta), "latitude": float("nan")},
        {**exif.to_json(meta), "lens": "x" * 10_000},
        {**exif.to_json(meta), "taken_at": "2019-06-01T10:30:00"},  # no zone
        ["not", "a", "record"],
    ):
        with pytest.raises(InvalidInput):
            exif.from_json(bad)


def test_an_ingest_reads_the_metadata_in_the_decode_process() -> None:
    decoder = PooledDecoder(500, 10**12, 1, 10.0, 512)
    try:
        out = np.empty((3, 224, 224), dtype=np.float32)
        data = photo(Shot(gps=SYDNEY))
        got = decoder.prepare(data, 64_000_000, PreprocessConfig(), out, min_side=224, photo=True)
        assert got.photo == exif.parse(data, "jpeg")
        assert decoder.prepare(data, 64_000_000, PreprocessConfig(), out, min_side=224).photo is None
    finally:
        decoder.pool.close()
