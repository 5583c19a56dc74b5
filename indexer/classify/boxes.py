"""Region boxes ``[x1, y1, x2, y2]`` from any detector: validation, normalisation and crops.

Boxes come in pixels or normalised to [0, 1] (``box_format``: ``pixels``, ``normalized`` or ``auto``,
which reads a box whose four numbers are all within [0, 1] as normalised). A box must lie inside the
image (a half-pixel of slack for rounding), have x2 > x1 and y2 > y1, and cover at least one pixel.
Crops use the integer pixel rectangle that contains the box (floor of x1/y1, ceil of x2/y2).
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from indexer.errors import InvalidInput

BoxFormat = Literal["auto", "pixels", "normalized"]
MAX_BOXES: Final = 64
SLACK_PX: Final = 0.5


def resolve_boxes(
    boxes: list[list[float]], width: int, height: int, box_format: BoxFormat = "auto"
) -> list[tuple[int, int, int, int]]:
    """Integer pixel rectangles (x1, y1, x2, y2), x2/y2 exclusive; InvalidInput names the bad box."""
    if not boxes:
        raise InvalidInput("boxes must not be empty")
    if len(boxes) > MAX_BOXES:
        raise InvalidInput(f"at most {MAX_BOXES} boxes per request, got {len(boxes)}")
    out = []
    for index, box in enumerate(boxes):
        details = {"index": index, "box": box, "width": width, "height": height}
        if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
            raise InvalidInput(f"box {index} must be four finite numbers [x1, y1, x2, y2]", details)
        x1, y1, x2, y2 = (float(v) for v in box)
        normalised = box_format == "normalized" or (
            box_format == "auto" and all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2))
        )
        if normalised:
            x1, x2 = x1 * width, x2 * width
            y1, y2 = y1 * height, y2 * height
        if not (x2 > x1 and y2 > y1):
            raise InvalidInput(f"box {index} is empty: it needs x2 > x1 and y2 > y1", details)
        if x1 < -SLACK_PX or y1 < -SLACK_PX or x2 > width + SLACK_PX or y2 > height + SLACK_PX:
            raise InvalidInput(f"box {index} lies outside the {width}x{height} image", details)
        px1, py1 = max(0, math.floor(x1 + 1e-9)), max(0, math.floor(y1 + 1e-9))
        px2, py2 = min(width, math.ceil(x2 - 1e-9)), min(height, math.ceil(y2 - 1e-9))
        if px2 <= px1 or py2 <= py1:
            raise InvalidInput(f"box {index} covers no whole pixel", details)
        out.append((px1, py1, px2, py2))
    return out


def crop(pixels: NDArray[np.uint8], box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    x1, y1, x2, y2 = box
    out: NDArray[np.uint8] = np.ascontiguousarray(pixels[y1:y2, x1:x2])
    return out
