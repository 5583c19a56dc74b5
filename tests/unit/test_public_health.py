"""The public /health view says whether the service runs on the bundled test model (issue 24), and
nothing more of the model."""

from __future__ import annotations

from search_api.health import public_view


def test_public_health_says_when_results_are_not_semantic() -> None:
    model = {"ready": True, "is_test_model": True, "model_dir": "/secret/path", "model_id": "m"}
    report = {"status": "ok", "parts": {"model": model}}
    assert public_view(report) == {"status": "ok", "parts": {"model": {"ready": True, "is_test_model": True}}}


def test_public_health_of_a_real_model_says_so() -> None:
    report = {"status": "ok", "parts": {"model": {"ready": True, "is_test_model": False}}}
    assert public_view(report)["parts"]["model"] == {"ready": True, "is_test_model": False}


def test_a_model_that_did_not_load_reports_only_that() -> None:
    report = {"status": "unavailable", "parts": {"model": {"ready": False, "error": "no file at /x"}}}
    assert public_view(report) == {"status": "unavailable", "parts": {"model": {"ready": False}}}
