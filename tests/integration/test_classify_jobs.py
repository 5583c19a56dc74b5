"""Yes/no classifiers with calibration, and bulk-label jobs, over HTTP against the real stack."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.classify_helpers import error_of, indexed_collection, vectors_of
from tests.integration.conftest import Api
from tests.integration.helpers import wait_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def known(api: Api, settings: Settings) -> dict[str, Any]:
    files = {f"j{i}.jpg": make_image(1000 + i) for i in range(10)}
    name, ids = indexed_collection(api, "jobs", files)
    order = sorted(files)
    return {
        "name": name,
        "files": files,
        "ids": ids,
        "order": order,
        "vectors": vectors_of(settings, [ids[f] for f in order]),
    }


def hand_table(scores: list[float], labels: list[bool], threshold: float) -> tuple[int, int, int, int]:
    tp = fp = fn = tn = 0
    for score, label in zip(scores, labels, strict=True):
        predicted = score >= threshold
        if predicted and label:
            tp += 1
        elif predicted:
            fp += 1
        elif label:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def test_calibration_matches_a_confusion_table_by_hand(api: Api, known: dict[str, Any]) -> None:
    v, ids, order = known["vectors"], known["ids"], known["order"]
    name = f"yes-{uuid.uuid4().hex[:6]}"
    created = api.post("/classifiers", json={"name": name, "vectors": [v[0].tolist()]})
    assert created.status_code == 201, created.text
    assert created.json()["threshold"] is None and created.json()["model_id"] == "tiny-test-clip"
    # examples 1..9, labelled by hand (a mix that is not separable by score, so the sweep matters)
    labels = [True, False, True, True, False, False, True, False, True]
    examples = [
        {"image_id": ids[order[i]], "label": lab} for i, lab in zip(range(1, 10), labels, strict=True)
    ]
    response = api.post(f"/classifiers/{name}/calibrate", json={"examples": examples})
    assert response.status_code == 200, response.text
    body = response.json()
    scores = [float(v[i] @ v[0]) for i in range(1, 10)]
    assert [s["score"] for s in body["scores"]] == pytest.approx(scores, abs=1e-5)
    thresholds = sorted({e["score"] for e in body["scores"]})
    assert [row["threshold"] for row in body["thresholds"]] == thresholds
    best_f1, best = -1.0, None
    for row in body["thresholds"]:
        tp, fp, fn, tn = hand_table([e["score"] for e in body["scores"]], labels, row["threshold"])
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (tp, fp, fn, tn)
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        assert row["precision"] == pytest.approx(precision, abs=1e-6)
        assert row["recall"] == pytest.approx(recall, abs=1e-6)
        assert row["f1"] == pytest.approx(f1, abs=1e-6)
        if f1 >= best_f1:  # ascending thresholds: ties go to the higher one
            best_f1, best = f1, row["threshold"]
    assert body["method"] == "max_f1" and body["chosen"]["threshold"] == best and body["applied"] is True
    stored = api.get(f"/classifiers/{name}").json()
    assert stored["threshold"] == best
    assert stored["calibration"]["f1"] == pytest.approx(best_f1, abs=1e-6)
    assert stored["calibration"]["examples"] == 9 and stored["calibration"]["model_id"] == "tiny-test-clip"
    # a target precision: the lowest threshold that meets it, not stored when apply is false
    target_precision = max(r["precision"] for r in body["thresholds"])
    target = api.post(
        f"/classifiers/{name}/calibrate",
        json={"examples": examples, "target_precision": target_precision, "apply": False},
    ).json()
    meeting = [r["threshold"] for r in target["thresholds"] if r["precision"] >= target_precision]
    assert target["method"] == "target_precision" and target["chosen"]["threshold"] == min(meeting)
    assert api.get(f"/classifiers/{name}").json()["threshold"] == best


def test_calibrate_with_uploads_and_apply_everywhere(api: Api, known: dict[str, Any]) -> None:
    v, ids, order, files = known["vectors"], known["ids"], known["order"], known["files"]
    name = f"up-{uuid.uuid4().hex[:6]}"
    assert api.post("/classifiers", json={"name": name, "image_ids": [ids[order[0]]]}).status_code == 201
    response = api.post(
        f"/classifiers/{name}/calibrate",
        files=[
            ("positive", ("p.jpg", files[order[0]], "image/jpeg")),
            ("negative", ("n1.jpg", files[order[1]], "image/jpeg")),
            ("negative", ("n2.jpg", files[order[2]], "image/jpeg")),
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["file"] for s in body["scores"]] == ["p.jpg", "n1.jpg", "n2.jpg"]
    assert body["scores"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    threshold = body["chosen"]["threshold"]  # separable: max F1 = 1 at the positive's score
    assert body["chosen"]["f1"] == 1.0 and threshold == pytest.approx(1.0, abs=1e-4)
    # stored ids
    applied = api.post(
        f"/classifiers/{name}/apply", json={"image_ids": [ids[order[0]], ids[order[3]]]}
    ).json()
    assert [r["match"] for r in applied["results"]] == [True, False]
    assert applied["results"][1]["score"] == pytest.approx(float(v[3] @ v[0]), abs=1e-5)
    assert applied["results"][0]["reference"] == {"kind": "image", "image_id": ids[order[0]]}
    # uploads
    up = api.post(
        f"/classifiers/{name}/apply", files=[("files", ("a.jpg", files[order[0]], "image/jpeg"))]
    ).json()
    assert up["results"][0]["file"] == "a.jpg" and up["results"][0]["match"] is True
    # a whole collection, with a threshold that lets exactly the top 3 through
    scores = np.sort(v @ v[0])[::-1]
    cut = float((scores[2] + scores[3]) / 2)
    whole = api.post(
        f"/classifiers/{name}/apply", json={"collection": known["name"], "threshold": cut}
    ).json()
    expected = [ids[order[i]] for i in np.argsort(-(v @ v[0]))[:3]]
    assert [r["image_id"] for r in whole["results"]] == expected and whole["total"] == 3
    page = api.post(
        f"/classifiers/{name}/apply",
        json={"collection": known["name"], "threshold": cut, "limit": 1, "offset": 1},
    ).json()
    assert [r["image_id"] for r in page["results"]] == expected[1:2]
    # no threshold at all, and two sources at once
    bare = f"bare-{uuid.uuid4().hex[:6]}"
    api.post("/classifiers", json={"name": bare, "query": "a red square"})
    no_threshold = api.post(f"/classifiers/{bare}/apply", json={"image_ids": [ids[order[0]]]})
    assert no_threshold.status_code == 400 and "no threshold" in error_of(no_threshold)
    both = api.post(
        f"/classifiers/{name}/apply", json={"image_ids": [ids[order[0]]], "collection": known["name"]}
    )
    assert both.status_code == 400 and "exactly one" in error_of(both)
    one_sided = api.post(
        f"/classifiers/{name}/calibrate", json={"examples": [{"image_id": ids[order[0]], "label": True}]}
    )
    assert one_sided.status_code == 400 and "at least one true and one false" in error_of(one_sided)


def labelled(api: Api, collection: str, labels: list[str]) -> set[str]:
    body = {"collection": collection, "query": "x", "limit": 100, "filters": {"labels": labels}}
    response = api.post("/search/text", json=body)
    assert response.status_code == 200, response.text
    return {r["filename"] for r in response.json()["results"]}


def test_bulk_labels_appear_in_filtered_search_and_rerun_after_a_change(
    api: Api, known: dict[str, Any]
) -> None:
    v, order, collection = known["vectors"], known["order"], known["name"]
    set_name = f"bulk-{uuid.uuid4().hex[:6]}"
    classes = {
        "red": {"vectors": [v[0].tolist(), v[1].tolist()]},
        "blue": {"vectors": [v[i].tolist() for i in range(2, 10)]},
    }
    created = api.post("/class-sets", json={"name": set_name, "collection": collection, "classes": classes})
    assert created.status_code == 201, created.text
    started = api.post(f"/class-sets/{set_name}/label")
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["total"] == 10 and job["status_url"] == f"/jobs/{job['job_id']}"
    report = wait_job(api, job["job_id"])
    assert report["state"] == "completed" and report["kind"] == "label"
    assert (report["done"], report["failed"], report["processed"]) == (10, 0, 10)
    assert labelled(api, collection, ["red"]) == {order[0], order[1]}
    assert labelled(api, collection, ["blue"]) == set(order[2:])
    one = api.get(f"/images/{known['ids'][order[0]]}").json()
    assert one["labels"] == ["red"] and one["label_scores"]["red"] == pytest.approx(1.0, abs=1e-5)

    # another classifier's label lives beside the class set's labels
    yes = f"yes-{uuid.uuid4().hex[:6]}"
    api.post("/classifiers", json={"name": yes, "vectors": [v[5].tolist()], "threshold": 0.99999})
    job2 = api.post(f"/classifiers/{yes}/label", json={"collection": collection})
    assert job2.status_code == 202, job2.text
    assert wait_job(api, job2.json()["job_id"])["state"] == "completed"
    assert labelled(api, collection, [yes]) == {order[5]}

    # change the class set: j1 moves to blue, a third class takes j9; re-run replaces its own labels only
    patch = api.request(
        "PATCH",
        f"/class-sets/{set_name}",
        json={
            "classes": {
                "red": {"vectors": [v[0].tolist()]},
                "blue": {"vectors": [v[i].tolist() for i in range(1, 9)]},
                "green": {"vectors": [v[9].tolist()]},
            },
        },
    )
    assert patch.status_code == 200, patch.text
    rerun = wait_job(api, api.post(f"/class-sets/{set_name}/label").json()["job_id"])
    assert rerun["done"] == 10
    assert labelled(api, collection, ["red"]) == {order[0]}
    assert labelled(api, collection, ["blue"]) == set(order[1:9])
    assert labelled(api, collection, ["green"]) == {order[9]}
    assert labelled(api, collection, ["blue", yes]) == {order[5]}  # the classifier's label stayed

    # a threshold above every cross score and multi-label: only exact matches keep a label
    thr = api.post(f"/class-sets/{set_name}/label", json={"threshold": 0.99999, "multi_label": True}).json()
    assert wait_job(api, thr["job_id"])["done"] == 10
    assert labelled(api, collection, ["red"]) == {order[0]}
    assert labelled(api, collection, ["blue"]) == set(order[1:9])
