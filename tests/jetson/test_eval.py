"""Evaluation on the device: ``python3 -m cvnet.jetson eval`` is cvnet-eval, torch-free.

The tiny ONNX fixture is evaluated on a dataset of its own images through the container's
single entrypoint; a checkpoint, where no host runner is registered, is refused with the way to
export it; a default cvnet-bench run, where no host preparation is registered, says to pass
``--engine``. "Where none is registered" is simulated on the host by hiding the entry points.
"""

import json
import logging
import os
import shutil

import pytest

from cvnet.jetson.cli import main as jetson_main
from tests.fixtures import TINY_ONNX, copy_sidecar, tiny_image_paths

pytestmark = pytest.mark.device


@pytest.fixture
def no_host_plugins(monkeypatch):
    """This install as the device has it: no entry points (Python 3.6 has none anyway)."""
    monkeypatch.setattr("cvnet.core.plugins.entry_points", lambda group: {})


def _dataset(folder):
    """A cvnet CSV over the fixture's 7 images: 3 identities seen from the air and the ground."""
    rows = ["path,vehicle_id,camera,view,split"]
    for number, path in enumerate(tiny_image_paths()):
        name = os.path.basename(path)
        shutil.copy(path, str(folder / name))
        view = "A" if number % 2 else "G"
        rows.append("{},{},{}0,{},test".format(name, number // 2, view, view))
    (folder / "dataset.csv").write_text(u"\n".join(rows) + u"\n")
    return str(folder / "dataset.csv")


def test_eval_runs_through_the_jetson_entrypoint(tmp_path, capsys):
    model = str(tmp_path / "cvnet_tiny.onnx")
    shutil.copy(TINY_ONNX, model)
    copy_sidecar(model)
    data = _dataset(tmp_path)
    report = str(tmp_path / "eval.json")
    assert jetson_main(["eval", model, "--data", data, "--json-out", report]) == 0
    printed = capsys.readouterr().out
    assert "cvnet_tiny.onnx (onnxruntime, 64x64)" in printed and "| A2G |" in printed
    with open(report) as handle:
        metrics = json.load(handle)["metrics"]
    assert set(metrics) == {"A2G", "G2A"} and 0.0 <= metrics["A2G"]["mAP"] <= 1.0


def test_a_checkpoint_without_a_host_runner_is_refused_with_the_export(tmp_path, caplog,
                                                                        no_host_plugins):
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x80\x02 a checkpoint")
    with caplog.at_level(logging.ERROR):
        assert jetson_main(["eval", str(model), "--data", _dataset(tmp_path)]) == 1
    assert "{}: a PyTorch checkpoint needs torch".format(model) in caplog.text
    assert "no runner for .pt files is registered" in caplog.text
    assert "cvnet-export {} -o model.onnx".format(model) in caplog.text


def test_a_default_bench_run_without_the_host_says_to_pass_an_engine(caplog, no_host_plugins):
    with caplog.at_level(logging.ERROR):
        assert jetson_main(["bench", "--batch", "1", "--min-time", "0"]) == 1
    assert "a benchmark without --engine" in caplog.text
    assert "pass --engine cvnet.onnx or cvnet.plan" in caplog.text


def test_eval_extras_dump_sweep_and_plots(tmp_path, capsys):
    """--dist-out, --sweep and --plots on the tiny fixture (its weights are random: this checks
    what is written, tests/core/test_sweep.py what a sweep measures)."""
    import numpy as np

    model = str(tmp_path / "cvnet_tiny.onnx")
    shutil.copy(TINY_ONNX, model)
    copy_sidecar(model)
    data = _dataset(tmp_path)
    dump, report = str(tmp_path / "dist.npz"), str(tmp_path / "eval.json")
    args = ["eval", model, "--data", data, "--dist-out", dump, "--json-out", report,
            "--sweep", "scale,jpeg", "--bootstrap", "100", "--seed", "3"]
    try:
        import matplotlib  # noqa: F401
        plots = str(tmp_path / "plots")
        args += ["--plots", plots]
    except ImportError:  # the device has none: tests/jetson/test_eval.py checks the refusal
        plots = None
    assert jetson_main(args) == 0
    printed = capsys.readouterr().out
    assert "### Operating points" in printed and "### Degradation sweep" in printed
    with np.load(dump) as arrays:
        assert arrays["protocols"].tolist() == ["A2G", "G2A"]
        distances = arrays["A2G.distances"]
        assert distances.dtype == np.float32 and distances.shape == (3, 4)
        assert ((distances >= 0) & (distances <= 2)).all()
        assert set(arrays["A2G.query_views"]) == {"A"} and set(arrays["A2G.gallery_views"]) == {"G"}
        assert arrays["A2G.query_ids"].tolist() == ["0", "1", "2"]
        assert arrays["G2A.gallery_paths"][0].endswith("image_1.png")
    with open(report) as handle:
        result = json.load(handle)
    assert result["settings"]["bootstrap"] == {"resamples": 100, "seed": 3, "level": 0.95,
                                               "unit": "query"}
    assert len(result["metrics"]["A2G"]["mAP_ci95"]) == 2
    assert len(result["sweep"]["rows"]) == 2 * (9 + 7) and result["sweep"]["seed"] == 3
    assert set(result["sweep"]["min_side"]) == {"A2G", "G2A"}
    if plots:
        assert sorted(os.listdir(plots)) == ["roc.png", "scores.png", "sweep.png"]
        for name in os.listdir(plots):
            with open(os.path.join(plots, name), "rb") as handle:
                assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_without_matplotlib_are_refused_before_evaluating(tmp_path, caplog, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an import of it fails
    with caplog.at_level(logging.ERROR):
        assert jetson_main(["eval", str(tmp_path / "missing.onnx"), "--data", "nowhere",
                            "--plots", str(tmp_path / "plots")]) == 1
    assert "cvnet-eval --plots needs matplotlib" in caplog.text
    assert "pip install matplotlib" in caplog.text
