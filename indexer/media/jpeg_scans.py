"""Progressive JPEG scan bombs, refused from the markers before any decode (issue 23, item 4).

A progressive JPEG may hold any number of scans, and the decoder walks every block of the image for
each one, however few bytes the scan has: thousands of 20-byte AC scans make a 100 KB file that costs
seconds of CPU (about 4 ms per scan per million blocks on the reference machine). libjpeg-turbo's own
answer is a scan limit (TurboJPEG's TJPARAM_SCANLIMIT, djpeg -maxscans, 500 in its examples); OpenCV
does not expose it, so the scans are counted here:

- more than ``JPEG_MAX_SCANS`` start-of-scan markers -> InvalidInput, reason ``too_many_scans``;
- scans x pixels over ``JPEG_MAX_SCAN_PIXELS`` -> InvalidInput, reason ``scan_work``: the decoder's
  work grows with both, so a big image gets fewer scans (100 at 64 MP by default, about 0.5 s).

Counting is exact enough: 0xFF 0xDA cannot occur inside entropy-coded data (0xFF is stuffed there), so
every occurrence is a scan header, but for the rare one inside an embedded thumbnail (one more scan).
Sequential JPEGs (most camera photos) are not counted at all: only a progressive or lossless frame
may split an image into many scans, and its SOFn marker comes before the first scan.
"""

from __future__ import annotations

from typing import Final

from indexer.errors import InvalidInput

_SOS: Final = b"\xff\xda"
_MULTI_SCAN_SOF: Final = (b"\xff\xc2", b"\xff\xc6", b"\xff\xca", b"\xff\xce")  # progressive frames


def count_scans(data: bytes) -> int:
    """The number of scans of a progressive JPEG; 0 for a sequential one (not counted)."""
    first = data.find(_SOS)
    if first < 0 or not any(data.find(sof, 0, first) >= 0 for sof in _MULTI_SCAN_SOF):
        return 0
    return data.count(_SOS, first)


def check_scans(data: bytes, pixels: int, max_scans: int, max_scan_pixels: int) -> None:
    """Refuse a progressive JPEG whose scans would cost the decoder more than the limits allow."""
    scans = count_scans(data)
    if scans > max_scans:
        raise InvalidInput(
            f"progressive JPEG with {scans} scans, over the limit of {max_scans} (a scan bomb)",
            {"reason": "too_many_scans", "format": "jpeg", "scans": scans, "limit": max_scans},
        )
    if scans * pixels > max_scan_pixels:
        raise InvalidInput(
            f"progressive JPEG of {pixels} pixels with {scans} scans: {scans * pixels} scan-pixels of "
            f"decoding, over the limit of {max_scan_pixels} (a scan bomb)",
            {
                "reason": "scan_work",
                "format": "jpeg",
                "scans": scans,
                "pixels": pixels,
                "limit": max_scan_pixels,
            },
        )
