"""Pure parts of the ingest pipeline: area reduction of large decodes, the encoder's batch stream, and the
task time limits against the broker's visibility timeout."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from indexer.errors import InvalidInput
from indexer.media.decode import area_reduce, decode_image
from indexer.model.loader import tiny_encoder
from indexer.services.queue import time_limits, visibility_timeout_s
from indexer.settings import Settings
from tests.imagegen import make_image


def test_area_reduce_keeps_the_short_side_at_least_min_side() -> None:
    pixels = np.zeros((3000, 4000, 3), dtype=np.uint8)
    reduced, factor = area_reduce(pixels, 336)
    assert factor == 8 and reduced.shape == (375, 500, 3)
    small = np.zeros((500, 600, 3), dtype=np.uint8)
    same, factor = area_reduce(small, 336)
    assert factor == 1 and same is small


def test_large_png_decodes_reduced_but_reports_its_own_size() -> None:
    png = make_image(5, 2800, 2000, ".png")
    image = decode_image(png, 64_000_000, min_side=336)
    assert (image.width, image.height, image.reduction) == (2800, 2000, 4)
    assert image.pixels.shape == (500, 700, 3)
    assert decode_image(png, 64_000_000).pixels.shape == (2000, 2800, 3)  # no min_side: full size


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_embed_stream_yields_each_batch_with_vectors_and_errors_in_place(lanes: int) -> None:
    encoder = tiny_encoder(Settings(), lanes=lanes)
    assert encoder.lanes == lanes
    images = [np.full((64, 80, 3), i * 20, dtype=np.uint8) for i in range(7)]

    def prepare(i: int, slot: NDArray[np.float32]) -> None:
        if i in (4, 7):
            raise InvalidInput("bad item")
        slot[:] = encoder.preprocess(images[i])

    images.append(images[0])
    # the last batch runs in slices across the lanes: its outcomes still come back in place
    batches = [[0, 1, 2], [3, 4], [5, 6, 7]]
    out = list(encoder.embed_stream(iter(batches), prepare))
    assert [list(b) for b, _ in out] == batches
    flat = [o for _, outcomes in out for o in outcomes]
    assert isinstance(flat[4], InvalidInput) and isinstance(flat[7], InvalidInput)
    vectors = [o for o in flat if isinstance(o, np.ndarray)]
    assert all(v.shape == (encoder.dim,) for v in vectors)
    expected = encoder.encode_images([images[i] for i in (0, 1, 2, 3, 5, 6)])
    assert np.allclose(np.stack(vectors), expected, atol=1e-5)


def test_embed_stream_lanes_run_batches_at_once_and_stop_cleanly() -> None:
    """With two lanes, two batches are in the session together (each on its share of the threads), and a
    consumer that stops early leaves nothing running."""
    import threading

    encoder = tiny_encoder(lanes=2, settings=Settings(onnx_threads=2))
    assert encoder.visual.threads == 1  # ONNX_THREADS shared between the lanes
    inside, most = 0, 0
    lock = threading.Lock()
    run = encoder.visual.run

    def counting_run(x: NDArray[np.float32], normalize: bool = True) -> NDArray[np.float32]:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            threading.Event().wait(0.05)
            return run(x, normalize)
        finally:
            with lock:
                inside -= 1

    encoder.visual.run = counting_run  # type: ignore[method-assign]
    image = encoder.preprocess(np.full((64, 80, 3), 99, dtype=np.uint8))

    def prepare(i: int, slot: NDArray[np.float32]) -> None:
        slot[:] = image

    batches = [[i, i + 1] for i in range(0, 12, 2)]
    assert len(list(encoder.embed_stream(iter(batches), prepare))) == len(batches)
    assert most == 2
    stream = encoder.embed_stream(iter(batches), prepare)
    next(stream)
    stream.close()
    assert inside == 0


def test_auto_lanes() -> None:
    assert tiny_encoder(lanes=0, settings=Settings(onnx_threads=2)).lanes == 2
    assert tiny_encoder(lanes=0, settings=Settings(onnx_threads=1)).lanes == 1
    assert tiny_encoder(settings=Settings(onnx_threads=2)).lanes == 1  # the API's encoder: one lane


@pytest.mark.parametrize("chunk", [8, 128, 1000])
def test_visibility_timeout_stays_above_the_hard_limit(chunk: int) -> None:
    settings = Settings(ingest_chunk_size=chunk, task_visibility_timeout_s=10)
    limits = time_limits(settings, chunk)
    assert limits.soft_s < limits.hard_s < visibility_timeout_s(settings)
    assert time_limits(settings, 1).soft_s < limits.soft_s or chunk == 1  # scaled with the size


def test_a_stream_starts_with_one_short_batch_per_lane_and_ends_with_one_even_batch_per_lane() -> None:
    two = tiny_encoder(lanes=2, settings=Settings(onnx_threads=2))
    one = tiny_encoder(Settings(), lanes=1)
    assert two.batch_size == one.batch_size == 16
    assert two.batch_plan(128) == [4, 4, 16, 16, 16, 16, 16, 16, 12, 12]
    assert one.batch_plan(128) == [4] + [16] * 7 + [12]
