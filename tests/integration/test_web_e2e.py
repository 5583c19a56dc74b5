"""The web page end to end, in Debian's headless Chromium driven by Selenium (nothing is downloaded).

Creates a collection, uploads images through the page, waits for the job's progress to reach
`completed`, searches by text, by a dropped image and by "similar", filters by tag, and checks the API
key prompt against an app that requires keys. Screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
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
from tests.integration.helpers import new_collection, serve_in_thread, upload, wait_job
from tests.preconditions import missing

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
        missing("chromium and chromium-driver are needed (scripts/setup.sh installs them)")
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


def grid_thumbnail_urls(driver: WebDriver, count: int) -> list[str]:
    """The object URLs that the grid's cards show, once all `count` thumbnails have come."""
    script = (
        "return [...document.querySelectorAll('#results .card img')].map((i) => i.src)"
        ".filter((src) => src.startsWith('blob:'));"
    )
    urls: list[str] = wait_for(
        lambda: found if len(found := driver.execute_script(script)) == count else None, f"{count} thumbnails"
    )
    return urls


def loadable(driver: WebDriver, urls: list[str]) -> list[bool]:
    """Whether each URL still loads as an image (a revoked object URL does not)."""
    driver.set_script_timeout(WAIT_S)
    result: list[bool] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(arguments[0].map((url) => new Promise((resolve) => {"
        "  const img = new Image(); img.onload = () => resolve(true); img.onerror = () => resolve(false);"
        "  img.src = url; }))).then(done);",
        urls,
    )
    return result


def bar_max(driver: WebDriver, bar_id: str) -> str:
    return driver.find_element(By.ID, bar_id).get_attribute("max") or ""


def upload_state(driver: WebDriver) -> dict[str, str]:
    box = driver.find_element(By.ID, "upload-progress")
    return {
        key: box.get_attribute(f"data-{key}") or "" for key in ("state", "run", "job", "requests", "sent")
    }


def start_upload(driver: WebDriver, input_css: str, keys: str, tags: str = "") -> int:
    """Choose files (or a folder) in the upload form and press Upload; returns the page's upload run."""
    run = int(upload_state(driver)["run"] or 0)
    file_input(driver, input_css).send_keys(keys)
    return press_upload(driver, run, tags, "the chosen files")


def press_upload(driver: WebDriver, run: int, tags: str, chosen: str) -> int:
    """Once the page says what was chosen, set the tags and press Upload; returns the new upload run."""
    wait_for(lambda: "ready" in driver.find_element(By.ID, "upload-chosen").text, chosen)
    tag_box = driver.find_element(By.ID, "upload-tags")
    tag_box.clear()
    if tags:
        tag_box.send_keys(tags)
    driver.find_element(By.ID, "upload-button").click()
    wait_for(lambda: int(upload_state(driver)["run"] or 0) == run + 1, "the upload to start")
    return run + 1


def drop_on(driver: WebDriver, css: str, paths: list[Path]) -> None:
    """A drop of files or folders from the desktop onto an element, as Chromium delivers one: DevTools'
    Input.dispatchDragEvent with file-system paths, so that a dropped folder arrives as a directory entry
    (webkitGetAsEntry) that the page must walk. A synthetic DataTransfer cannot carry directories."""
    box = driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'}); const r = arguments[0].getBoundingClientRect();"
        "return [r.left + r.width / 2, r.top + r.height / 2];",
        driver.find_element(By.CSS_SELECTOR, css),
    )
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        driver.execute_cdp_cmd(  # type: ignore[attr-defined]
            "Input.dispatchDragEvent", {"type": kind, "x": box[0], "y": box[1], "data": data}
        )


def start_upload_by_drop(driver: WebDriver, folder: Path, tags: str = "") -> int:
    """Drop a folder on the upload zone and press Upload; returns the page's upload run."""
    run = int(upload_state(driver)["run"] or 0)
    drop_on(driver, "#upload-drop", [folder])
    return press_upload(driver, run, tags, "the dropped folder")


def wait_upload(driver: WebDriver, final: set[str], timeout_s: float = 180) -> str:
    state: str = wait_for(
        lambda: s if (s := upload_state(driver)["state"]) in final | {"failed", "cancelled"} else "",
        f"the upload to end ({final})",
        timeout_s=timeout_s,
    )
    return state


def upload_through_page(driver: WebDriver, paths: list[Path], tags: str) -> None:
    start_upload(driver, "#upload-files", "\n".join(str(p) for p in paths), tags)
    state = wait_upload(driver, {"completed"})
    assert state == "completed", driver.find_element(By.ID, "upload-progress").text


def test_the_printed_search_link_opens_its_collection_and_searches(browser: WebDriver, api: Api) -> None:
    """`clipsearch up --demo` prints /?collection=demo&q=...: the page must select that collection and run
    that search, and show no upload progress while nothing uploads."""
    driver = browser
    collection = new_collection(api, "link")
    other = new_collection(api, "other")  # created later, so not what the page would pick by itself
    accepted = upload(api, collection, [(f"l{i}.jpg", make_image(700 + i)) for i in range(3)])
    assert wait_job(api, accepted["job_id"])["state"] == "completed"
    driver.get(f"{api.base}/?collection={collection}&q=a%20red%20car")
    wait_for(lambda: len(cards(driver)) == 3, "the linked search's three results")
    assert driver.find_element(By.ID, "collection").get_attribute("value") == collection != other
    assert driver.find_element(By.ID, "query").get_attribute("value") == "a red car"
    assert "a red car" in status_text(driver)
    assert all(card.get_attribute("data-score") for card in cards(driver))  # scored hits, not the newest grid
    assert not driver.find_element(By.ID, "upload-progress").is_displayed()


def test_upload_search_similar_and_filter_in_the_page(browser: WebDriver, api: Api, tmp_path: Path) -> None:
    driver = browser
    images = {f"e2e-{i}.jpg": make_image(900 + i) for i in range(5)}
    paths = []
    for name, data in images.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)

    driver.get(api.base + "/")
    # The session stack runs the bundled tiny model: the header says plainly that results mean nothing.
    assert api.get("/health").json()["parts"]["model"]["is_test_model"] is True
    pill = driver.find_element(By.ID, "health")
    wait_for(lambda: pill.text == "test model — results are not semantic", "the test-model warning")
    assert "warn" in (pill.get_attribute("class") or "")
    pill.screenshot(str(ARTIFACTS / "00-health-test-model.png"))

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
    assert driver.find_element(By.ID, "index-text").text.startswith("2 indexed of 2")
    wait_for(lambda: f"{collection} · 5" in driver.find_element(By.ID, "collection-list").text, "count 5")
    # Before any search the grid shows the collection's newest images (the beta upload first).
    wait_for(lambda: len(cards(driver)) == 5, "the five newest images")
    assert {c.get_attribute("data-filename") for c in cards(driver)[:2]} == {"e2e-3.jpg", "e2e-4.jpg"}
    assert "Newest images" in status_text(driver)
    shot(driver, "02-uploaded")

    # Text search: the page shows what the API ranks first, with its thumbnail loaded.
    query = "a colourful abstract picture"
    expected = api.post("/search/text", json={"collection": collection, "query": query, "limit": 48}).json()
    driver.find_element(By.ID, "query").send_keys(query)
    driver.find_element(By.ID, "search-button").click()
    wait_for(
        lambda: f"5 result(s) for “{query}”" in status_text(driver) and len(cards(driver)) == 5,
        "five result cards",
    )
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

    # Click an image: the view shows its original, its details and similar images; "More like this"
    # runs the similar search in the grid, where the clicked image comes back first.
    target = next(c for c in cards(driver) if c.get_attribute("data-filename") == "e2e-1.jpg")
    target.click()
    view = driver.find_element(By.ID, "image-view")
    wait_for(lambda: view.get_attribute("open") is not None, "the image view")
    wait_for(
        lambda: driver.execute_script(
            "const img = document.querySelector('#image-view img.original');"
            "return img && img.complete && img.naturalWidth === 320;"
        ),
        "the original (320 px wide) in the view",
    )
    assert "e2e-1.jpg" in view.find_element(By.CSS_SELECTOR, "table.meta").text
    assert "320 × 240" in view.find_element(By.CSS_SELECTOR, "table.meta").text
    wait_for(
        lambda: len(view.find_elements(By.CSS_SELECTOR, "#image-similar .card")) == 4, "4 similar images"
    )
    shot(driver, "05a-image-view")
    next(b for b in view.find_elements(By.TAG_NAME, "button") if b.text == "More like this").click()
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

    # A class set made in the page: e2e-0 and e2e-3 are picked as the examples of two classes in the
    # image view, and a third class comes from a prompt line.
    class_set = f"cs-{uuid.uuid4().hex[:8]}"
    for filename, klass in (("e2e-0.jpg", "first"), ("e2e-3.jpg", "fourth")):
        next(c for c in cards(driver) if c.get_attribute("data-filename") == filename).click()
        form = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#image-view #example-form"), "the form")
        form.find_element(By.NAME, "klass").send_keys(klass)
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(
            lambda k=klass, f=filename: f"{k} ← {f}" in driver.find_element(By.ID, "class-examples").text,
            "the example chip",
        )
        driver.find_element(By.ID, "image-close").click()
    driver.find_element(By.ID, "class-name").send_keys(class_set)
    driver.find_element(By.ID, "class-lines").send_keys("stripes: a photo of stripes")
    shot(driver, "06a-class-set-form")
    driver.find_element(By.CSS_SELECTOR, "#class-form button[type=submit]").click()
    wait_for(lambda: f"Created class set {class_set}" in status_text(driver), "the class set to be created")
    made = api.get(f"/class-sets/{class_set}").json()
    assert sorted(c["name"] for c in made["classes"]) == ["first", "fourth", "stripes"], made
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
    wait_for(
        lambda: f"5 result(s) for “{query}”" in status_text(driver) and len(cards(driver)) == 5,
        "five results with labels",
    )
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
def keyed_server(settings: Settings) -> Iterator[tuple[str, CountingApp]]:
    """The same app, requiring a key, behind a request log, on a werkzeug server in a thread (real HTTP,
    loopback)."""
    app = create_app(settings.model_copy(update={"api_keys": ["page-key-1"]}))
    counter = CountingApp(app.wsgi_app, upload_delay_s=0)
    app.wsgi_app = counter  # type: ignore[method-assign]
    with serve_in_thread(app) as url:
        yield url, counter


def test_page_asks_for_the_key_and_keeps_it(
    browser: WebDriver, keyed_server: tuple[str, CountingApp]
) -> None:
    driver = browser
    url, counter = keyed_server
    driver.get(url + "/")
    driver.execute_script("localStorage.clear();")
    driver.refresh()
    dialog = driver.find_element(By.ID, "key-dialog")
    wait_for(lambda: dialog.get_attribute("open") is not None, "the key dialog")
    shot(driver, "09-key-prompt")
    driver.find_element(By.ID, "key-input").send_keys("page-key-1")
    driver.find_element(By.ID, "key-save").click()
    wait_for(lambda: dialog.get_attribute("open") is None, "the dialog to close")
    # the dialog's `close` event (which stores the key) is dispatched as a task after `open` goes
    wait_for(
        lambda: driver.execute_script("return localStorage.getItem('clipsearch.apiKey');") == "page-key-1",
        "the key kept in localStorage",
    )
    wait_for(lambda: driver.find_element(By.ID, "key-button").text == "API key ✓", "the key mark")
    # With the key kept, a reload lists collections without asking again. The dialog opens on a 401
    # answer: once the server has answered the page's first keyed requests (collections and class sets),
    # none of them with a 401, and the page has shown the answer, nothing is left that would open it.
    _, answered = counter.log()
    driver.refresh()

    def load_answered() -> list[tuple[str, str, int]]:
        since = counter.log()[1][len(answered) :]
        done = {(m, p) for m, p, _ in since} >= {("GET", "/collections"), ("GET", "/class-sets")}
        return since if done else []

    since_reload = wait_for(load_answered, "the page's first requests to be answered")
    assert all(status != 401 for _, _, status in since_reload), since_reload
    wait_for(
        lambda: "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or ""), "no error"
    )
    assert driver.find_element(By.ID, "key-dialog").get_attribute("open") is None
    shot(driver, "10-key-kept")
    # /docs renders the OpenAPI document with the kept key.
    driver.get(url + "/docs")
    wait_for(lambda: "operations" in driver.find_element(By.ID, "docs-status").text, "the docs to render")
    assert driver.find_elements(By.CSS_SELECTOR, "details.op")
    shot(driver, "11-docs")
    driver.execute_script("localStorage.clear();")


class CountingApp:
    """WSGI middleware that counts the request body bytes the app reads, per kind of request, logs every
    request as it arrives and as it is answered, and slows each file upload a little (a slower network)
    so that the page is seen mid-upload. With the gate closed (`hold_files`), a file upload is counted
    and then held until `release_files`."""

    def __init__(self, app: Any, upload_delay_s: float = 0.25) -> None:
        self.app = app
        self.upload_delay_s = upload_delay_s
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self.arrivals: list[tuple[str, str]] = []  # (method, path), in the order they reached the app
        self.answers: list[tuple[str, str, int]] = []  # (method, path, status), in answer order
        self.gate = threading.Event()
        self.gate.set()
        self.hold_from = 0  # with the gate closed, file uploads after this many (in all) are held

    def hold_files(self) -> None:
        self.hold_files_after(0)

    def hold_files_after(self, count: int) -> None:
        """Let `count` more file uploads through, then hold the rest until `release_files`."""
        with self.lock:
            self.hold_from = self.requests["files"] + count
        self.gate.clear()

    def release_files(self) -> None:
        self.gate.set()

    @staticmethod
    def kind(method: str, path: str) -> str:
        if method == "POST" and path.startswith("/jobs/") and path.endswith("/files"):
            return "files"
        if method == "POST" and path.endswith("/known"):
            return "known"
        return "other"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        kind = self.kind(method, path)
        stream = environ["wsgi.input"]
        owner = self

        class Counted:
            def read(self, *args: Any) -> bytes:
                data: bytes = stream.read(*args)
                with owner.lock:
                    owner.body_bytes[kind] += len(data)
                return data

            def readline(self, *args: Any) -> bytes:
                data: bytes = stream.readline(*args)
                with owner.lock:
                    owner.body_bytes[kind] += len(data)
                return data

            def read1(self, *args: Any) -> bytes:
                data: bytes = stream.read1(*args)
                with owner.lock:
                    owner.body_bytes[kind] += len(data)
                return data

            def readinto(self, buffer: Any) -> int:
                count: int = stream.readinto(buffer)
                with owner.lock:
                    owner.body_bytes[kind] += count or 0
                return count

            def __getattr__(self, name: str) -> Any:
                return getattr(stream, name)

        def answer(status: str, headers: Any, exc_info: Any = None) -> Any:
            with self.lock:
                self.answers.append((method, path, int(status.split()[0])))
            return start_response(status, headers, exc_info)

        environ["wsgi.input"] = Counted()
        with self.lock:
            self.requests[kind] += 1
            self.arrivals.append((method, path))
            held = self.requests[kind] > self.hold_from
        if kind == "files":
            if held:
                self.gate.wait(timeout=300)
            time.sleep(self.upload_delay_s)
        return self.app(environ, answer)

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self.lock:
            return Counter(self.requests), Counter(self.body_bytes)

    def log(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
        """The arrivals and the answers so far."""
        with self.lock:
            return list(self.arrivals), list(self.answers)


MAX_UPLOAD_BYTES = 160 * 1024  # about 20 of the test's 7 KB images per request


@pytest.fixture()
def counted_server(settings: Settings) -> Iterator[tuple[str, CountingApp]]:
    """The same app with a low MAX_UPLOAD_BYTES, behind a byte counter, on a werkzeug server in a thread
    (the shared stack's Weaviate, Redis and workers)."""
    app = create_app(settings.model_copy(update={"max_upload_bytes": MAX_UPLOAD_BYTES}))
    counter = CountingApp(app.wsgi_app)
    app.wsgi_app = counter  # type: ignore[method-assign]
    try:
        with serve_in_thread(app) as url:
            yield url, counter
    finally:
        counter.release_files()  # no request thread stays held


def test_folder_upload_in_chunks_resumes_without_resending(
    browser: WebDriver, counted_server: tuple[str, CountingApp], api: Api, tmp_path: Path
) -> None:
    driver = browser
    url, counter = counted_server
    folder = tmp_path / "photos"
    sizes = 0
    for i in range(200):  # nested folders; the same file name in several of them
        path = folder / f"day{i % 4}" / f"set{i % 3}" / f"img-{i // 12}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = make_image(5000 + i)
        path.write_bytes(data)
        sizes += len(data)
    assert len({p.relative_to(folder) for p in folder.rglob("*.jpg")}) == 200
    (folder / "day0" / "notes.txt").write_text("not an image")  # left out by the page
    assert sizes > 5 * MAX_UPLOAD_BYTES
    collection = f"folder-{uuid.uuid4().hex[:8]}"
    assert api.post("/collections", json={"name": collection}).status_code == 201

    driver.get(url + "/")
    driver.execute_script("localStorage.setItem('clipsearch.collection', arguments[0]);", collection)
    driver.refresh()
    wait_for(
        lambda: driver.find_element(By.ID, "collection").get_attribute("value") == collection, "collection"
    )

    # A folder dropped from the desktop: the page walks its directory entries, hashes, and sends the files
    # in requests under MAX_UPLOAD_BYTES, several in flight, appended to one job.
    # Three requests reach the server, the rest are held: the job indexes what it has while the upload
    # is still running, and the page shows those images as they arrive (the count and the grid).
    counter.hold_files_after(3)
    start_upload_by_drop(driver, folder, "folder")
    # Both bars run against the whole drop from the start: 200 images and all their bytes (the walk
    # knew them), never a total that grows while hashing goes on.
    bars: list[tuple[str, str]] = []

    def mid_way() -> bool:
        bars.append((bar_max(driver, "bytes-bar"), bar_max(driver, "index-bar")))
        state = upload_state(driver)
        return state["state"] == "uploading" and int(state["requests"] or 0) >= 3

    wait_for(mid_way, "the upload mid-way")
    assert set(bars) == {(str(sizes), "200")}, set(bars)
    assert float(driver.find_element(By.ID, "bytes-bar").get_attribute("value") or 0) > 0
    assert "/s" in driver.find_element(By.ID, "bytes-text").text
    assert "hashing" not in driver.find_element(By.ID, "upload-head").text
    wait_for(
        lambda: (
            re.search(rf"{collection} · [1-9]", driver.find_element(By.ID, "collection-list").text)
            and len(cards(driver)) > 0
        ),
        "the count and the grid to grow while the job runs",
    )
    assert upload_state(driver)["state"] == "uploading"  # the held requests keep the job open
    panel = driver.find_element(By.ID, "upload-panel")
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    panel.screenshot(str(ARTIFACTS.parent / "upload-progress.png"))
    shot(driver, "20-folder-upload-mid-way")
    counter.release_files()

    assert wait_upload(driver, {"completed"}) == "completed", driver.find_element(By.ID, "upload-panel").text
    job_id = upload_state(driver)["job"]
    report = api.get(f"/jobs/{job_id}").json()
    assert (report["state"], report["done"], report["failed"], report["total"]) == ("completed", 200, 0, 200)
    requests, body = counter.snapshot()
    assert requests["files"] >= 5, requests
    assert body["files"] >= sizes, body
    assert driver.find_element(By.ID, "index-text").text.startswith("200 indexed of 200")
    # Relative paths are the stored file names.
    names = {
        i["filename"]
        for i in api.get(f"/collections/{collection}/images", params={"limit": 1000}).json()["images"]
    }
    assert "photos/day1/set1/img-0.jpg" in names and len(names) == 200
    # A card cuts the shared folder prefix, not the base name that tells the images apart.
    wait_for(lambda: len(cards(driver)) == 48, "a full page of newest images")
    # Read in one script: the grid is the DOM of one moment, whatever the page does next.
    tails = driver.execute_script(
        """return [...document.querySelectorAll('#results .card')].slice(0, 6).map((card) => {
             const tail = card.querySelector('.filename .tail');
             return [card.dataset.filename, tail.textContent, tail.scrollWidth <= tail.clientWidth];
           });"""
    )
    assert len(tails) == 6
    for filename, tail, fits in tails:
        assert tail == filename.rsplit("/", 1)[-1] and fits, (filename, tail, fits)
    shot(driver, "21-folder-uploaded")

    # The grid pages through the newest images: 48 a page, a second page with others. The first page's
    # thumbnails are object URLs that the page revokes once their cards are gone.
    wait_for(lambda: len(cards(driver)) == 48, "a full page of newest images")
    first_page = {c.get_attribute("data-id") for c in cards(driver)}
    first_urls = grid_thumbnail_urls(driver, 48)
    assert all(loadable(driver, first_urls))
    driver.find_element(By.ID, "next-page").click()
    wait_for(lambda: "49–96 of 200" in status_text(driver), "the second page")
    assert first_page.isdisjoint(c.get_attribute("data-id") for c in cards(driver))
    second_urls = grid_thumbnail_urls(driver, 48)
    assert all(loadable(driver, second_urls))
    assert not any(loadable(driver, first_urls))

    # Reload and drop the same folder again: every hash is known, no image byte reaches the server.
    driver.refresh()
    wait_for(
        lambda: driver.find_element(By.ID, "collection").get_attribute("value") == collection, "collection"
    )
    before_requests, before_body = counter.snapshot()
    start_upload_by_drop(driver, folder)
    assert wait_upload(driver, {"nothing-to-send"}) == "nothing-to-send"
    # The good news, plainly: both bars full, nothing sent, in words rather than the engine's state.
    summary = driver.find_element(By.ID, "upload-summary")
    assert summary.is_displayed()
    assert re.fullmatch(r"All 200 images are already stored — [\d.]+ (KB|MB) not sent", summary.text), (
        summary.text
    )
    assert driver.find_element(By.ID, "upload-head").text.startswith("Nothing new to send")
    for bar in ("bytes-bar", "index-bar"):
        assert bar_max(driver, bar) == driver.find_element(By.ID, bar).get_attribute("value"), bar
    assert driver.find_element(By.ID, "index-text").text.startswith("0 indexed + 200 already stored of 200")
    assert "nothing to send" in driver.find_element(By.ID, "upload-note").text
    driver.find_element(By.ID, "upload-panel").screenshot(str(ARTIFACTS / "22-repeat-drop-panel.png"))
    after_requests, after_body = counter.snapshot()
    assert after_requests["files"] == before_requests["files"], after_requests
    assert after_body["files"] == before_body["files"]
    sent = sum(after_body.values()) - sum(before_body.values())
    assert 0 < after_body["known"] - before_body["known"] == sent < 64 * 1024, (sent, after_body)
    shot(driver, "22-folder-resent-nothing")

    # Cancel: new files start uploading (this time through the folder picker, webkitdirectory), Cancel
    # stops the sending and cancels the job. The server holds this upload's file requests, so when Cancel
    # is pressed every sender is waiting on a request in flight: what was sent before the cancel is
    # exactly the held requests, and any request after it is one too many.
    more = tmp_path / "more"
    for i in range(120):
        (more / f"part{i % 2}").mkdir(parents=True, exist_ok=True)
        (more / f"part{i % 2}" / f"m-{i}.jpg").write_bytes(make_image(7000 + i))
    parallel = api.get("/uploads/limits").json()["parallel_requests"]
    before_cancel, _ = counter.snapshot()
    counter.hold_files()
    start_upload(driver, "#upload-folder", str(more))
    wait_for(
        lambda: counter.snapshot()[0]["files"] - before_cancel["files"] >= parallel,
        "every sender waiting on a held request",
    )
    wait_for(
        lambda: upload_state(driver)["state"] == "uploading" and upload_state(driver)["job"], "uploading"
    )
    cancelled_job = upload_state(driver)["job"]
    driver.find_element(By.ID, "upload-cancel").click()
    assert wait_upload(driver, {"cancelled"}) == "cancelled"
    assert api.get(f"/jobs/{cancelled_job}").json()["state"] == "cancelled"

    # The page refreshes its collections once the cancel is answered (after every sender has seen it):
    # wait until that request has reached the server, then look at what arrived after the DELETE.
    cancel = ("DELETE", f"/jobs/{cancelled_job}")

    def after_cancel() -> list[tuple[str, str]]:
        arrivals, _ = counter.log()
        later = arrivals[arrivals.index(cancel) + 1 :] if cancel in arrivals else []
        return later if ("GET", "/collections") in later else []

    later = wait_for(after_cancel, "the page's refresh after the cancel")
    assert [a for a in later if CountingApp.kind(*a) == "files"] == []  # nothing more is sent
    assert counter.snapshot()[0]["files"] - before_cancel["files"] == parallel, counter.snapshot()

    # Released, the held requests reach a cancelled job: none is accepted, the job took no file.
    answered = len(counter.log()[1])
    counter.release_files()

    def held_answers() -> list[tuple[str, str, int]]:
        files = [a for a in counter.log()[1][answered:] if CountingApp.kind(a[0], a[1]) == "files"]
        return files if len(files) == parallel else []

    held = wait_for(held_answers, "the held requests to be answered")
    assert all(status != 202 for _, _, status in held), held
    assert api.get(f"/jobs/{cancelled_job}").json()["total"] == 0
    assert api.delete(f"/collections/{collection}").status_code == 204
