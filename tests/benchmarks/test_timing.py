"""The timing loops: warm-up, minimum runs, sync before every clock read, the e2e pipeline."""

import cv2
import numpy as np
import pytest

from cvnet.benchmarks.timing import time_calls, time_end_to_end
from cvnet.core.errors import ConfigError
from cvnet.core.preprocess import PreprocessConfig, preprocess_batch

pytestmark = pytest.mark.device


def test_time_calls_warms_up_then_times_at_least_min_runs():
    calls, syncs = [], []
    times = time_calls(lambda: calls.append(1), warmup=3, min_time=0.0, min_runs=4,
                       sync=lambda: syncs.append(len(calls)))
    assert len(times) == 4 and len(calls) == 7
    assert all(t >= 0 for t in times)
    # synchronised after the warm-up and before and after every timed call
    assert syncs == [3, 3, 4, 4, 5, 5, 6, 6, 7]


class FakeRunner(object):
    """Just what the e2e loop uses: prepare (the shared path) and infer."""

    def __init__(self):
        self.config = PreprocessConfig(32, 32)
        self.batches = []

    def prepare(self, images):
        return preprocess_batch(images, self.config)

    def infer(self, batch):
        self.batches.append(batch.shape)
        return np.ones((len(batch), 4), np.float32)


def _jpeg(value):
    image = np.full((40, 30, 3), value, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_end_to_end_decodes_prepares_and_infers_whole_batches(caplog):
    runner = FakeRunner()
    jpegs = [_jpeg(10), b"not an image", _jpeg(200)]
    times = time_end_to_end(runner, jpegs, 4, warmup=1, min_time=0.0, min_runs=3)
    assert len(times) == 3
    assert runner.batches == [(4, 3, 32, 32)] * 4  # corrupt bytes skipped, batches still full
    assert "does not decode" in caplog.text


def test_end_to_end_without_decodable_images_fails():
    with pytest.raises(ConfigError, match="none of the 2"):
        time_end_to_end(FakeRunner(), [b"x", b"y"], 2, warmup=0, min_time=0.0, min_runs=1)
    with pytest.raises(ConfigError, match="at least one"):
        time_end_to_end(FakeRunner(), [], 2, warmup=0, min_time=0.0)
