"""The page's photo pickers in Chromium: a date range and a place filter a search, each option showing its
count (GET /collections/<c>/facets), and the search mode picker finds a file by name. The screenshot of
the filtered grid goes to test-artifacts/web-facets.png."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from tests.integration.test_web_e2e import ARTIFACTS, browser, cards, status_text, wait_for
from tests.photogen import SYDNEY, TOKYO, Shot, photo, plain

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the module's Chromium, shared with test_web_e2e

VERSAILLES = (48.8049, 2.1204)
FILES = {
    "paris.jpg": photo(Shot(), "jpeg", seed=11),
    "versailles.jpg": photo(Shot(taken="2019:07:14 10:00:00", gps=VERSAILLES), "jpeg", seed=12),
    "tokyo.heic": photo(
        Shot(taken="2021:12:24 18:00:00", offset="+09:00", make="Apple", model="iPhone 12", gps=TOKYO),
        "heic",
        seed=13,
    ),
    "sydney.tiff": photo(Shot(taken="2020:01:15 08:00:00", offset=None, gps=SYDNEY), "tiff", seed=14),
    "plain.jpg": plain("jpeg", seed=15),
}


def _shown(driver: WebDriver) -> set[str]:
    return {str(card.get_attribute("data-filename")) for card in cards(driver)}


def _options(driver: WebDriver, css: str) -> dict[str, str]:
    """value -> text of a picker's options."""
    select = driver.find_element(By.CSS_SELECTOR, css)
    return {str(o.get_attribute("value")): o.text for o in select.find_elements(By.TAG_NAME, "option")}


def _pick(driver: WebDriver, css: str, value: str) -> None:
    Select(driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)


def test_a_date_range_and_a_place_filter_the_search(browser: WebDriver, api: Api) -> None:
    driver = browser
    collection = new_collection(api, "facets")
    assert wait_job(api, upload(api, collection, list(FILES.items()))["job_id"])["done"] == len(FILES)
    driver.get(f"{api.base}/?collection={collection}")
    wait_for(lambda: driver.find_element(By.ID, "facets").is_displayed(), "the photo pickers")
    wait_for(lambda: len(cards(driver)) == 5, "the five newest images")

    months = _options(driver, "#facet-from")
    assert months == {
        "": "from any month",
        "2019-06": "Jun 2019 · 1",
        "2019-07": "Jul 2019 · 1",
        "2020-01": "Jan 2020 · 1",
        "2021-12": "Dec 2021 · 1",
    }
    places = _options(driver, "#facet-place")
    assert places["country:France"] == "France · 2" and places["city:Paris"] == "Paris · 1"
    assert places["country:Japan"] == "Japan · 1"
    assert _options(driver, "#facet-camera")["Canon EOS R5"] == "Canon EOS R5 · 3"

    # With an empty search box the pickers browse: every photo that matches, latest taken first, counted.
    _pick(driver, "#facet-place", "country:France")
    wait_for(lambda: _shown(driver) == {"paris.jpg", "versailles.jpg"}, "the two photos of France")
    assert [c.get_attribute("data-filename") for c in cards(driver)] == ["versailles.jpg", "paris.jpg"]
    assert "France: 1–2 of 2" in status_text(driver) and "result(s)" not in status_text(driver)
    driver.find_element(By.ID, "facet-clear").click()
    wait_for(lambda: len(_shown(driver)) == 5 and "Newest images" in status_text(driver), "the newest again")

    query = "a photo of a city"
    driver.find_element(By.ID, "query").send_keys(query)
    driver.find_element(By.ID, "search-button").click()
    wait_for(lambda: f"5 result(s) for “{query}”" in status_text(driver), "five results")

    _pick(driver, "#facet-from", "2019-06")
    _pick(driver, "#facet-to", "2019-07")
    wait_for(lambda: _shown(driver) == {"paris.jpg", "versailles.jpg"}, "the two photos of June-July 2019")
    assert "Jun 2019 – Jul 2019" in status_text(driver)

    _pick(driver, "#facet-place", "city:Paris")
    wait_for(lambda: _shown(driver) == {"paris.jpg"}, "the one photo of Paris in that range")
    assert "2 result" not in status_text(driver) and "Paris" in status_text(driver)
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS.parent / "web-facets.png"))

    cards(driver)[0].click()  # the image view tells when, where and with what
    body = lambda: driver.find_element(By.ID, "image-body").text  # noqa: E731
    wait_for(lambda: "Paris, Île-de-France, France" in body(), "the place in the image view")
    assert "Canon EOS R5 · RF24-105mm F4 L IS USM" in body() and "ISO 200" in body()
    assert "2019-06-01 12:30:00 (UTC+02:00)" in body()  # the time where it was taken
    driver.save_screenshot(str(ARTIFACTS.parent / "web-facets-image.png"))
    driver.find_element(By.ID, "image-close").click()

    _pick(driver, "#facet-place", "country:Japan")
    wait_for(lambda: _shown(driver) == set(), "nothing from Japan in June-July 2019")
    driver.find_element(By.ID, "facet-clear").click()
    wait_for(lambda: len(_shown(driver)) == 5, "every photo again once cleared")


def test_the_mode_picker_finds_a_file_by_name(browser: WebDriver, api: Api) -> None:
    driver = browser
    collection = new_collection(api, "modes")
    files: list[tuple[str, Any]] = [(f"IMG_{3001 + i}.jpg", plain("jpeg", seed=100 + i)) for i in range(12)]
    assert wait_job(api, upload(api, collection, files)["job_id"])["done"] == len(files)
    driver.get(f"{api.base}/?collection={collection}")
    wait_for(lambda: len(cards(driver)) == 12, "the twelve images")
    _pick(driver, "#search-mode", "hybrid")
    assert driver.find_element(By.ID, "min-score").get_attribute("disabled") is not None
    query = driver.find_element(By.ID, "query")
    query.clear()
    query.send_keys("IMG_3007")
    driver.find_element(By.ID, "search-button").click()
    wait_for(lambda: "result(s) for “IMG_3007”" in status_text(driver), "the hybrid search")
    assert cards(driver)[0].get_attribute("data-filename") == "IMG_3007.jpg"
