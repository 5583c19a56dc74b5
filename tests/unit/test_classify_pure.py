"""The pure parts of classification: templates, ensembles, scoring, softmax, margin, `other`, boxes,
crops and calibration sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.classify.boxes import crop, resolve_boxes
from indexer.classify.calibration import choose, sweep
from indexer.classify.prompts import (
    CLIP_ENSEMBLE,
    ensemble,
    normalise_rows,
    render,
    rendered,
    validate_templates,
)
from indexer.classify.scoring import OTHER, References, assign, class_scores, predict, softmax
from indexer.errors import InvalidInput


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


# -- prompts ---------------------------------------------------------------------------------------
def test_templates_render_and_validate() -> None:
    assert render("a photo of a {}.", " cat ") == "a photo of a cat."
    assert render("{} {x}", "dog") == "dog {x}"  # other braces are left alone
    assert rendered("cat", ["{}", "a {}", "{}"]) == ["cat", "a cat"]
    assert validate_templates(["a {}", "a {}", "b {}"]) == ["a {}", "b {}"]
    assert len(CLIP_ENSEMBLE) == 7 and all(t.count("{}") == 1 for t in CLIP_ENSEMBLE)
    for bad in (["no placeholder"], ["{} and {}"], []):
        with pytest.raises(InvalidInput):
            validate_templates(bad)
    with pytest.raises(InvalidInput, match="blank"):
        rendered("  ", ["{}"])


def test_ensemble_is_the_normalised_mean_of_normalised_vectors() -> None:
    vectors = np.array([[3.0, 0.0], [0.0, 0.5]])  # different norms: normalised before averaging
    assert np.allclose(ensemble(vectors), unit(1.0, 1.0))
    with pytest.raises(InvalidInput, match="zero vector"):
        normalise_rows(np.zeros((1, 3)))
    with pytest.raises(InvalidInput, match="finite"):
        normalise_rows(np.array([[np.nan, 1.0]]))


# -- scoring ---------------------------------------------------------------------------------------
def refs_3d() -> References:
    # class a: two references (x and y); class b: one (z). Given out of class order on purpose.
    vectors = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    return References.build(["a", "b"], vectors, [1, 0, 0])


def test_class_score_is_the_max_over_references_and_explains_which() -> None:
    refs = refs_3d()
    q = np.stack([unit(1, 0.1, 0), unit(0.1, 1, 0), unit(0, 0.2, 1)])
    scores, best = class_scores(q, refs, with_best=True)
    assert scores.shape == (3, 2)
    assert scores[0, 0] == pytest.approx(unit(1, 0.1, 0)[0])  # a via reference x
    assert scores[1, 0] == pytest.approx(unit(0.1, 1, 0)[1])  # a via reference y
    assert scores[2, 1] == pytest.approx(unit(0, 0.2, 1)[2])
    assert best is not None
    assert refs.order[best[0, 0]] == 1 and refs.order[best[1, 0]] == 2 and refs.order[best[2, 1]] == 0


def test_predict_ranks_softmaxes_margins_and_other() -> None:
    refs = refs_3d()
    q = unit(0.8, 0.0, 0.6)
    [p] = predict(q, refs, logit_scale=10.0, threshold=None, top_k=5)
    assert p.label == "a" and not p.is_other
    assert p.score == pytest.approx(0.8) and p.margin == pytest.approx(0.2)
    expected = np.exp(10 * 0.8) / (np.exp(10 * 0.8) + np.exp(10 * 0.6))
    assert p.probability == pytest.approx(expected, abs=1e-6)
    assert [r.name for r in p.ranked] == ["a", "b"]
    assert sum(r.probability for r in p.ranked) == pytest.approx(1.0, abs=1e-5)
    [low] = predict(q, refs, logit_scale=10.0, threshold=0.9)
    assert low.label == OTHER and low.is_other and low.ranked[0].name == "a"
    [single] = predict(q, References.build(["only"], np.eye(3)[:1], [0]), logit_scale=1.0)
    assert single.margin is None and single.probability == pytest.approx(1.0)


def test_softmax_is_stable_for_large_logits() -> None:
    probs = softmax(np.array([[1.0, 0.0]]), 1e4)
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)


def test_build_refuses_empty_and_mismatched_input() -> None:
    with pytest.raises(InvalidInput, match="no classes"):
        References.build([], np.empty((0, 3)), [])
    with pytest.raises(InvalidInput, match="'b' has no references"):
        References.build(["a", "b"], np.eye(3)[:1], [0])
    with pytest.raises(InvalidInput, match="dimension 2"):
        class_scores(np.ones((1, 2)), refs_3d())


def test_assign_top1_threshold_and_multilabel() -> None:
    scores = np.array([[0.9, 0.1, 0.85], [0.2, 0.3, 0.1]])
    assert assign(scores, None) == [[0], [1]]
    assert assign(scores, 0.5) == [[0], []]
    assert assign(scores, 0.5, multi_label=True) == [[0, 2], []]
    with pytest.raises(InvalidInput):
        assign(scores, None, multi_label=True)


def test_blocked_scoring_matches_a_plain_product(monkeypatch: pytest.MonkeyPatch) -> None:
    import indexer.classify.scoring as scoring

    monkeypatch.setattr(scoring, "BLOCK", 7)
    rng = np.random.default_rng(1)
    refs = References.build(
        [f"c{i}" for i in range(5)], rng.standard_normal((12, 8)), [i % 5 for i in range(12)]
    )
    q = normalise_rows(rng.standard_normal((30, 8)))
    scores, _ = class_scores(q, refs)
    plain = np.stack([(q @ refs.vectors[refs.class_of == c].T).max(axis=1) for c in range(5)], axis=1)
    assert np.allclose(scores, plain, atol=1e-6)


# -- boxes ------------------------------------------------------------------------------------------
def test_boxes_in_pixels_and_normalised() -> None:
    assert resolve_boxes([[10, 20, 110, 220]], 320, 240) == [(10, 20, 110, 220)]
    assert resolve_boxes([[0.0, 0.0, 0.5, 1.0]], 320, 240) == [(0, 0, 160, 240)]
    assert resolve_boxes([[0.5, 0.5, 1, 1]], 320, 240, "pixels") == [(0, 0, 1, 1)]
    assert resolve_boxes([[0, 0, 1, 1]], 320, 240, "normalized") == [(0, 0, 320, 240)]
    assert resolve_boxes([[9.5, 0.2, 20.4, 3.7]], 320, 240) == [(9, 0, 21, 4)]  # containing rectangle
    assert resolve_boxes([[-0.4, 0, 320.3, 240]], 320, 240) == [(0, 0, 320, 240)]  # half-pixel slack


@pytest.mark.parametrize(
    ("box", "fragment"),
    [
        ([0, 0, 400, 100], "outside"),
        ([-5, 0, 10, 10], "outside"),
        ([50, 50, 40, 60], "empty"),
        ([1, 2, 3], "four finite numbers"),
        ([0, 0, float("nan"), 1], "four finite numbers"),
        ([0, 0, 1.2, 0.5], "outside"),
    ],
)
def test_bad_boxes_are_refused_with_a_reason(box: list[float], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment) as err:
        resolve_boxes([box], 320, 240, "normalized" if box == [0, 0, 1.2, 0.5] else "auto")
    assert err.value.details["index"] == 0


def test_crop_takes_the_rectangle() -> None:
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    out = crop(pixels, (1, 2, 4, 4))
    assert out.shape == (2, 3, 3) and (out == pixels[2:4, 1:4]).all() and out.flags.c_contiguous


# -- calibration ------------------------------------------------------------------------------------
def test_sweep_matches_hand_counts() -> None:
    scores = [0.9, 0.8, 0.8, 0.6, 0.4, 0.3]
    labels = [True, True, False, True, False, False]
    rows = {r.threshold: r for r in sweep(scores, labels)}
    assert sorted(rows) == pytest.approx([0.3, 0.4, 0.6, 0.8, 0.9])
    r = rows[0.8]  # predicted positive: 0.9, 0.8, 0.8 -> tp 2, fp 1, fn 1, tn 2
    assert (r.tp, r.fp, r.fn, r.tn) == (2, 1, 1, 2)
    assert r.precision == pytest.approx(2 / 3, abs=1e-6) and r.recall == pytest.approx(2 / 3, abs=1e-6)
    r = rows[0.6]  # tp 3, fp 1 -> p 0.75, r 1, f1 6/7
    assert (r.tp, r.fp, r.fn, r.tn) == (3, 1, 0, 2) and r.f1 == pytest.approx(6 / 7, abs=1e-6)
    assert choose(list(rows.values())).threshold == pytest.approx(0.6)
    assert choose(list(rows.values()), target_precision=1.0).threshold == pytest.approx(0.9)
    assert choose(list(rows.values()), target_precision=0.7).threshold == pytest.approx(0.6)
    with pytest.raises(InvalidInput, match="at least one true and one false"):
        sweep([0.1, 0.2], [True, True])


def test_choose_reports_an_unreachable_precision() -> None:
    rows = sweep([0.9, 0.1], [False, True])
    with pytest.raises(InvalidInput, match=r"no threshold reaches precision 0\.9"):
        choose(rows, target_precision=0.9)
