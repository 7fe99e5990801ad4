"""The default run's model cache: two benchmarks preparing one model take turns."""

import threading
import time

import pytest

from cvnet.benchmarks import models
from cvnet.benchmarks.models import PreparedModel, prepare_model

pytestmark = pytest.mark.device


def test_two_benchmarks_preparing_one_model_do_not_overlap(monkeypatch, tmp_path):
    """Without the folder's lock both export into the same files at once: one removes or
    replaces what the other is writing or about to time."""
    inside, overlaps = [], []

    def fake_host_prepare(arch, input_size, batch_max, half, onnx, cache):
        inside.append(arch)
        if len(inside) > 1:
            overlaps.append(list(inside))
        time.sleep(0.3)  # an export takes a while
        inside.remove(arch)
        return PreparedModel(arch=arch, checkpoint="", onnx=None, params=1, gmacs=1.0,
                             input_size=input_size)

    monkeypatch.setattr(models, "load_plugin", lambda group, name: fake_host_prepare)
    cache = str(tmp_path / "cache")
    runs = [threading.Thread(target=prepare_model, args=("cvnet_tiny",),
                             kwargs={"input_size": (64, 64), "cache": cache}) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert overlaps == []
