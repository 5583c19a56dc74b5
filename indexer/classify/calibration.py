"""Calibrating a yes/no classifier: precision, recall and F1 at every distinct score threshold.

An example is predicted positive when its score is >= the threshold. The candidate thresholds are the
distinct scores of the examples, so each row of the sweep is one distinct confusion table. The chosen
threshold is either the one with the highest F1 (ties: the higher threshold, i.e. fewer false
positives at equal F1) or, given a target precision, the lowest threshold whose precision meets it
(the one with the most recall among those that do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from indexer.errors import InvalidInput


class ThresholdStats(BaseModel):
    """The confusion table and its figures when everything scoring >= threshold is called true."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float


def sweep(scores: NDArray[np.floating] | list[float], labels: list[bool]) -> list[ThresholdStats]:
    """One row per distinct score, in ascending threshold order."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.ndim != 1 or len(s) != len(y):
        raise InvalidInput("one score per labelled example")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise InvalidInput(
            "calibration needs at least one true and one false example",
            {"true": positives, "false": negatives},
        )
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp_cum = np.cumsum(y_sorted)
    fp_cum = np.cumsum(~y_sorted)
    # the last position of each run of equal scores: everything up to it is >= that score
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    rows = []
    for i in last[::-1]:
        tp, fp = int(tp_cum[i]), int(fp_cum[i])
        fn, tn = positives - tp, negatives - fp
        precision = tp / (tp + fp)
        recall = tp / positives
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
        rows.append(
            ThresholdStats(
                threshold=float(s_sorted[i]),
                tp=tp,
                fp=fp,
                fn=fn,
                tn=tn,
                precision=round(precision, 6),
                recall=round(recall, 6),
                f1=round(f1, 6),
            )
        )
    return rows


def choose(rows: list[ThresholdStats], target_precision: float | None = None) -> ThresholdStats:
    """The max-F1 row, or the lowest threshold meeting ``target_precision``."""
    if not rows:
        raise InvalidInput("no thresholds to choose from")
    if target_precision is None:
        return max(rows, key=lambda r: (r.f1, r.threshold))
    meeting = [r for r in rows if r.precision >= target_precision]
    if not meeting:
        best = max(r.precision for r in rows)
        raise InvalidInput(
            f"no threshold reaches precision {target_precision}; the best is {best}",
            {"target_precision": target_precision, "best_precision": best},
        )
    return min(meeting, key=lambda r: r.threshold)


@dataclass(frozen=True)
class CalibrationResult:
    scores: list[float]
    rows: list[ThresholdStats]
    chosen: ThresholdStats
    method: str


def calibrate(scores: list[float], labels: list[bool], target_precision: float | None) -> CalibrationResult:
    """Sweep the labelled examples' scores (the classifier's max cosine over its references) and choose
    the threshold."""
    rows = sweep(scores, labels)
    chosen = choose(rows, target_precision)
    return CalibrationResult(
        scores=scores,
        rows=rows,
        chosen=chosen,
        method="max_f1" if target_precision is None else "target_precision",
    )
