"""The web page's files as the app serves them: the page loads ES modules, every module that main.js
imports (directly or not) goes out as JavaScript with the page's security headers, and nothing else in
search_api/web/ is served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from indexer.settings import Settings
from search_api.app import create_app
from search_api.web import WEB_DIR

IMPORT = re.compile(r'^import\s[^;]*?from\s+"\./([\w.-]+)";', re.MULTILINE | re.DOTALL)


@pytest.fixture()
def client(tmp_path: Path) -> FlaskClient:
    return create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")).test_client()


def imported_modules(entry: str) -> set[str]:
    """The modules that `entry` imports, following their imports (relative ones, as the page has)."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(IMPORT.findall((WEB_DIR / name).read_text()))
    return seen


def test_the_page_loads_main_as_a_module_and_no_inline_script(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script type="module" src="/web/main.js">']
    assert re.search(r"<script\b[^>]*>\s*</script>", page)  # nothing inline: the CSP would refuse it


def test_every_module_goes_out_as_javascript_under_the_csp(client: FlaskClient) -> None:
    modules = imported_modules("main.js")
    assert {"api.js", "upload.js", "results.js", "classes.js", "upload-view.js"} <= modules
    for name in sorted(modules):
        response = client.get(f"/web/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8", name
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'self'" in policy


def test_the_page_s_csp_lets_modules_from_self_and_blob_thumbnails(client: FlaskClient) -> None:
    policy = client.get("/").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "blob:" in directives["img-src"]


@pytest.mark.parametrize("name", ["package.json", "__init__.py", "index.html", "../app.py", "nope.js"])
def test_only_the_page_s_scripts_and_styles_are_served(client: FlaskClient, name: str) -> None:
    assert client.get(f"/web/{name}").status_code == 404
