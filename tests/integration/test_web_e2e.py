"""The web page end to end, in Debian's headless Chromium driven by Selenium (nothing is downloaded).

Creates a collection, uploads images through the page, waits for the job's progress to reach
`completed`, searches by text, by a dropped image and by "similar", filters by tag, and checks the API
key prompt against an app that requires keys. Screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from indexer.settings import Settings
from search_api.app import create_app
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import serve_in_thread

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
WAIT_S = 60.0
# Fetch a URL into a File and dispatch dragover + drop with it on an element, as a user's drop would.
DROP_JS = """
const [selector, url, name] = arguments;
fetch(url).then((r) => r.blob()).then((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], name, { type: blob.type || "image/jpeg" }));
  const zone = document.querySelector(selector);
  for (const type of ["dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "chromium and chromium-driver are needed (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's screenshots
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def shot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A screenshot named after the test when it fails (the browser fixture holds the page)."""
    failed_before = request.session.testsfailed
    yield
    driver = request.node.funcargs.get("browser")
    if driver is not None and request.session.testsfailed > failed_before:
        with contextlib.suppress(WebDriverException):
            shot(driver, f"failed-{request.node.name}")


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except WebDriverException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def shot(driver: WebDriver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def file_input(driver: WebDriver, css: str) -> WebElement:
    """The page's file inputs are hidden behind labels; show one so WebDriver can type paths into it."""
    element = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].hidden = false;", element)
    return element


def cards(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def first_card(driver: WebDriver) -> dict[str, Any]:
    card = cards(driver)[0]
    return {
        "id": card.get_attribute("data-id"),
        "filename": card.get_attribute("data-filename"),
        "score": float(card.get_attribute("data-score") or "nan"),
    }


def chip_named(driver: WebDriver, text: str) -> WebElement:
    found: WebElement = wait_for(
        lambda: next(
            (b for b in driver.find_elements(By.CSS_SELECTOR, "#filters button") if b.text == text), None
        ),
        f"the {text} filter chip",
    )
    return found


def status_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "status").text)


def upload_through_page(driver: WebDriver, paths: list[Path], tags: str) -> None:
    jobs_before = len(driver.find_elements(By.CSS_SELECTOR, "#jobs .job"))
    file_input(driver, "#upload-files").send_keys("\n".join(str(p) for p in paths))
    tag_box = driver.find_element(By.ID, "upload-tags")
    tag_box.clear()
    tag_box.send_keys(tags)
    driver.find_element(By.ID, "upload-button").click()
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#jobs .job")) > jobs_before, "a job card")
    job = driver.find_elements(By.CSS_SELECTOR, "#jobs .job")[0]
    state = wait_for(
        lambda: (
            job.get_attribute("data-state")
            if job.get_attribute("data-state") in {"completed", "failed"}
            else ""
        ),
        "the job to finish",
        timeout_s=120,
    )
    assert state == "completed", job.text


def test_upload_search_similar_and_filter_in_the_page(browser: WebDriver, api: Api, tmp_path: Path) -> None:
    driver = browser
    images = {f"e2e-{i}.jpg": make_image(900 + i) for i in range(5)}
    paths = []
    for name, data in images.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)

    driver.get(api.base + "/")
    wait_for(lambda: driver.find_element(By.ID, "health").text == "healthy", "the health pill")

    # Create a collection through the page; it becomes the selected one.
    collection = f"web-{uuid.uuid4().hex[:8]}"
    driver.find_element(By.ID, "new-collection").send_keys(collection)
    driver.find_element(By.CSS_SELECTOR, "#create-form button").click()
    wait_for(
        lambda: driver.find_element(By.ID, "collection").get_attribute("value") == collection,
        "the new collection to be selected",
    )
    shot(driver, "01-collection-created")

    # Upload two batches with different tags; each job's progress runs to completed.
    upload_through_page(driver, paths[:3], "alpha")
    upload_through_page(driver, paths[3:], "beta")
    assert "indexed 2" in driver.find_elements(By.CSS_SELECTOR, "#jobs .job")[0].text
    wait_for(lambda: f"{collection} · 5" in driver.find_element(By.ID, "collection-list").text, "count 5")
    shot(driver, "02-uploaded")

    # Text search: the page shows what the API ranks first, with its thumbnail loaded.
    query = "a colourful abstract picture"
    expected = api.post("/search/text", json={"collection": collection, "query": query, "limit": 48}).json()
    driver.find_element(By.ID, "query").send_keys(query)
    driver.find_element(By.ID, "search-button").click()
    wait_for(lambda: len(cards(driver)) == 5, "five result cards")
    assert first_card(driver)["id"] == expected["results"][0]["id"]
    wait_for(
        lambda: driver.execute_script(
            "const img = document.querySelector('#results .card img');"
            "return img && img.complete && img.naturalWidth > 0;"
        ),
        "the first thumbnail to load",
    )
    shot(driver, "03-text-search")

    # Search by image: dropping (choosing) e2e-3.jpg puts e2e-3.jpg first, with a score near 1.
    file_input(driver, "#search-file").send_keys(str(paths[3]))
    wait_for(lambda: "image e2e-3.jpg" in status_text(driver), "the image search")
    wait_for(lambda: cards(driver) and first_card(driver)["filename"] == "e2e-3.jpg", "e2e-3.jpg first")
    assert first_card(driver)["score"] > 0.99
    shot(driver, "04-image-search")

    # A real drop event on the search zone (a File built in the page from e2e-2's stored original).
    ids = {hit["filename"]: hit["id"] for hit in expected["results"]}
    driver.execute_script(DROP_JS, "#search-drop", f"/images/{ids['e2e-2.jpg']}/file", "dropped.jpg")
    wait_for(lambda: "image dropped.jpg" in status_text(driver), "the dropped-image search")
    wait_for(lambda: cards(driver) and first_card(driver)["filename"] == "e2e-2.jpg", "e2e-2.jpg first")

    # Click for similar images: the clicked image comes back first.
    target = next(c for c in cards(driver) if c.get_attribute("data-filename") == "e2e-1.jpg")
    target.click()
    wait_for(lambda: "similar to e2e-1.jpg" in status_text(driver), "the similar search")
    wait_for(lambda: cards(driver) and first_card(driver)["filename"] == "e2e-1.jpg", "e2e-1.jpg first")
    shot(driver, "05-similar")

    # Tag filter chips: #beta keeps only the two images of the second upload.
    chip_named(driver, "#beta").click()
    wait_for(
        lambda: sorted(c.get_attribute("data-filename") for c in cards(driver)) == ["e2e-3.jpg", "e2e-4.jpg"],
        "only the beta images",
    )
    shot(driver, "06-filtered")
    chip_named(driver, "#beta").click()  # off again
    wait_for(lambda: len(cards(driver)) == 5, "all five again")

    # A class set over the collection (made through the API: the page lists and applies them), with
    # e2e-0 and e2e-3 as the examples of two classes.
    class_set = f"cs-{uuid.uuid4().hex[:8]}"
    created = api.post(
        "/class-sets",
        json={
            "name": class_set,
            "collection": collection,
            "classes": {
                "first": {"image_ids": [ids["e2e-0.jpg"]]},
                "fourth": {"image_ids": [ids["e2e-3.jpg"]]},
            },
        },
    )
    assert created.status_code == 201, created.text
    driver.refresh()
    item = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, f'#class-sets li[data-name="{class_set}"]'),
        "the class set",
    )
    assert "first, fourth" in item.text
    jobs_before = len(driver.find_elements(By.CSS_SELECTOR, "#jobs .job"))
    item.find_element(By.CSS_SELECTOR, "button").click()  # label every image of the collection
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#jobs .job")) > jobs_before, "the label job")
    label_job = driver.find_elements(By.CSS_SELECTOR, "#jobs .job")[0]
    wait_for(lambda: label_job.get_attribute("data-state") == "completed", "the label job to complete")

    # Label filter chips: `first` keeps only e2e-0.jpg, whose own example it is.
    driver.find_element(By.ID, "query").send_keys(query)
    driver.find_element(By.ID, "search-button").click()
    wait_for(lambda: len(cards(driver)) == 5, "five results with labels")
    chip_named(driver, "first").click()
    wait_for(lambda: [c.get_attribute("data-filename") for c in cards(driver)] == ["e2e-0.jpg"], "only e2e-0")
    assert "first" in cards(driver)[0].text
    shot(driver, "07-label-filter")

    # Classify a dropped image with the selected class set: e2e-3.jpg is `fourth`, with score 1.
    item = driver.find_element(By.CSS_SELECTOR, f'#class-sets li[data-name="{class_set}"]')
    item.click()
    wait_for(
        lambda: (
            "selected"
            in (
                driver.find_element(
                    By.CSS_SELECTOR, f'#class-sets li[data-name="{class_set}"]'
                ).get_attribute("class")
                or ""
            )
        ),
        "the class set to be selected",
    )
    file_input(driver, "#classify-file").send_keys(str(paths[3]))
    result = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, "#classify-result .prediction"), "a prediction"
    )
    assert result.text.startswith("fourth 1.000"), result.text
    shot(driver, "08-classified")

    assert api.delete(f"/class-sets/{class_set}").status_code == 204
    assert api.delete(f"/collections/{collection}").status_code == 204


@pytest.fixture()
def keyed_server(settings: Settings) -> Iterator[str]:
    """The same app, requiring a key, on a werkzeug server in a thread (real HTTP, loopback)."""
    with serve_in_thread(create_app(settings.model_copy(update={"api_keys": ["page-key-1"]}))) as url:
        yield url


def test_page_asks_for_the_key_and_keeps_it(browser: WebDriver, keyed_server: str) -> None:
    driver = browser
    driver.get(keyed_server + "/")
    driver.execute_script("localStorage.clear();")
    driver.refresh()
    dialog = driver.find_element(By.ID, "key-dialog")
    wait_for(lambda: dialog.get_attribute("open") is not None, "the key dialog")
    shot(driver, "09-key-prompt")
    driver.find_element(By.ID, "key-input").send_keys("page-key-1")
    driver.find_element(By.ID, "key-save").click()
    wait_for(lambda: dialog.get_attribute("open") is None, "the dialog to close")
    assert driver.execute_script("return localStorage.getItem('clipsearch.apiKey');") == "page-key-1"
    wait_for(lambda: driver.find_element(By.ID, "key-button").text == "API key ✓", "the key mark")
    # With the key kept, a reload lists collections without asking again.
    driver.refresh()
    wait_for(
        lambda: "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or ""), "no error"
    )
    time.sleep(0.5)
    assert driver.find_element(By.ID, "key-dialog").get_attribute("open") is None
    shot(driver, "10-key-kept")
    # /docs renders the OpenAPI document with the kept key.
    driver.get(keyed_server + "/docs")
    wait_for(lambda: "operations" in driver.find_element(By.ID, "docs-status").text, "the docs to render")
    assert driver.find_elements(By.CSS_SELECTOR, "details.op")
    shot(driver, "11-docs")
    driver.execute_script("localStorage.clear();")
