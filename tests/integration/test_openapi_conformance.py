"""Schemathesis against the live stack: generated requests for every operation in /openapi.json.

Checks: no 5xx, every status and content type documented, every response body valid against its
schema. Bounded: MAX_EXAMPLES generated cases per operation (positive data from the schema, so
requests get past validation and reach the handlers) and a wall-clock budget for the whole run.

The operations run with data that exists (a collection with two images, a finished job) as explicit
examples beside the random ones, so handlers are exercised on the success path too, not only on 404s.

Driven through hypothesis directly rather than schemathesis' pytest plugin: its lazy-fixture
parametrization does not run under pytest 9, and a single test keeps the budget in one place.
Collections that the run creates are deleted at the end; random names never match another test's
(those carry a uuid), so the destructive operations stay inside the run.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
import schemathesis.checks as checks
from hypothesis import HealthCheck, Phase, given, settings

from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
BUDGET_S = 150.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# Breaks found by this test in routes owned elsewhere, reported to their owners. Each still checked
# every run: the test xfails (with the evidence) while one reproduces, and passes once all are fixed;
# a break on any other operation fails it. Remove an entry when its fix lands.
KNOWN_ISSUES: dict[str, str] = {}


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 1500 else text[:1500] + " …"


def _exerciser(
    api: Api, targets: dict[str, str], seen: list[str], created: set[str], counter: list[int]
) -> Any:
    def exercise(case: Any) -> None:
        counter[0] += 1
        # Every third case of a read aims at data that exists instead of a random id.
        if case.path_parameters and case.method.upper() != "DELETE" and counter[0] % 3 == 0:
            for name in case.path_parameters:
                if name in targets:
                    case.path_parameters[name] = targets[name]
        response = case.call(base_url=api.base, timeout=60)
        if case.method.upper() == "POST" and case.path == "/collections" and response.status_code == 201:
            created.add(response.json()["name"])
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # schemathesis raises a FailureGroup
            if len(seen) < 3:
                seen.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {_short(exc)}")

    return exercise


def test_api_conforms_to_its_openapi_document(api: Api) -> None:
    collection = new_collection(api, "sch")
    job = upload(api, collection, [("a.jpg", make_image(701)), ("b.jpg", make_image(702))])
    assert wait_job(api, job["job_id"])["state"] == "completed"
    hits = api.post("/search/text", json={"collection": collection, "query": "a photo", "limit": 2}).json()
    image_id = hits["results"][0]["id"]

    schema = schemathesis.openapi.from_url(api.base + "/openapi.json")
    created: set[str] = set()
    failures: dict[str, list[str]] = {}
    counter = [0]
    targets = {"name": collection, "image_id": image_id, "job_id": job["job_id"]}
    started = time.monotonic()

    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        if time.monotonic() - started > BUDGET_S:
            failures.setdefault("budget", []).append(f"not run: {label}")
            continue
        seen: list[str] = failures.setdefault(label, [])
        run = settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(given(case=operation.as_strategy())(_exerciser(api, targets, seen, created, counter)))
        try:
            run()
        except BaseException as exc:  # generation itself failed
            seen.append(f"could not run: {_short(exc)}")

    for name in created:
        api.delete(f"/collections/{name}")
    api.delete(f"/collections/{collection}")

    bad = {label: found for label, found in failures.items() if found and label not in KNOWN_ISSUES}
    report = "\n".join(f"{label}:\n  " + "\n  ".join(found) for label, found in bad.items())
    assert not bad, f"{len(bad)} operation(s) broke the contract ({counter[0]} calls):\n{report}"
    assert counter[0] >= 10 * len(failures)
    known = {label: found for label, found in failures.items() if found and label in KNOWN_ISSUES}
    if known:
        pytest.xfail(
            f"known contract breaks still reproduce in {sorted(known)}: "
            + "; ".join(
                f"{label}: {KNOWN_ISSUES[label]} (e.g. {found[0][:160]})" for label, found in known.items()
            )
        )
