"""gpu-check: the orchestration end to end on the CPU (--smoke), its refusals, and how it judges
each step from the files the step wrote."""

import json
import importlib.util
import logging
import os

import pytest

torch = pytest.importorskip("torch")

from cvnet.gpucheck import run as run_module  # noqa: E402
from cvnet.gpucheck.cli import main  # noqa: E402
from cvnet.gpucheck.plan import CheckSettings, Paths, smoke_settings  # noqa: E402
from cvnet.gpucheck.report import markdown_report  # noqa: E402
from cvnet.gpucheck.run import GpuCheckError, preflight, run_check  # noqa: E402

NO_GPU = not torch.cuda.is_available()


@pytest.mark.slow
def test_smoke_check_runs_every_step_on_the_cpu(tmp_path):
    out = str(tmp_path / "gc")
    assert main(["--smoke", "--device", "cpu", "--output", out,
                 "--tests", "tests/engines/test_gpu.py"]) == 0
    with open(os.path.join(out, "gpu-check.json")) as handle:
        report = json.load(handle)
    assert report["schema"] == "cvnet-gpu-check/1" and report["passed"]
    assert report["mode"] == "smoke" and report["environment"]["torch"] == torch.__version__
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["tests", "benchmark", "synth", "train", "eval"]
    assert all(s["status"] == "passed" and os.path.isfile(s["log"]) for s in steps.values())
    assert steps["tests"]["details"]["counts"]["skipped"] == 1  # the gpu test, without a GPU
    assert {r["mode"] for r in steps["benchmark"]["details"]["rows"]} == {"network", "e2e"}
    epochs = steps["train"]["details"]["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2] and "metrics" in epochs[-1]
    assert set(steps["eval"]["details"]["metrics"]) == {"A2G", "G2A"}
    with open(os.path.join(out, "gpu-check.md")) as handle:
        text = handle.read()
    assert text.startswith("# cvnet gpu-check: PASSED")
    assert "## Training loss and mAP per epoch" in text and "| untrained |" in text
    assert "## cvnet-eval of the trained model" in text


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_the_full_check_refuses_to_start_without_cuda(tmp_path, caplog):
    out = str(tmp_path / "gc")
    assert main(["--output", out]) == 1
    assert "gpu-check needs a CUDA GPU, and this PyTorch sees none" in caplog.text
    assert "--smoke --device cpu" in caplog.text
    assert not os.path.exists(out)  # nothing ran, nothing written
    with pytest.raises(GpuCheckError, match="runs on CUDA only; --smoke"):
        preflight(CheckSettings(device="cpu"))


def test_missing_packages_are_named_with_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "pytest" else real(name, *args))
    with pytest.raises(GpuCheckError, match=r"cannot import pytest; gpu-check installs nothing"):
        preflight(smoke_settings("cpu"))


def test_a_failed_step_stops_the_steps_that_need_it(tmp_path, caplog):
    caplog.set_level(logging.INFO)

    def runner(argv, log_path, timeout, env):
        with open(log_path, "w") as log:
            log.write("ran\n")
        return 1 if "cvnet.core.synth" in argv else None  # synth fails, the others time out

    results = run_check(smoke_settings("cpu"), str(tmp_path), runner=runner)
    status = {r.name: r.status for r in results}
    assert status == {"tests": "failed", "benchmark": "failed", "synth": "failed",
                      "train": "not run", "eval": "not run"}
    assert "timeout" in results[0].summary and results[2].summary.startswith("exit code 1")
    assert results[3].summary == "not run: synth failed"
    report = {"passed": False, "date": "d", "mode": "smoke", "seconds": 1.0, "command": "c",
              "environment": {}, "steps": [dict(r.__dict__) for r in results]}
    assert markdown_report(report).startswith("# cvnet gpu-check: FAILED")


def _history(paths, entries):
    os.makedirs(paths.train)
    with open(os.path.join(paths.train, "history.json"), "w") as handle:
        json.dump({"epochs": entries}, handle)


def _epoch(n, loss, mean_ap):
    entry = {"epoch": n, "metrics": {"A2G": {"mAP": mean_ap}, "G2A": {"mAP": mean_ap}}}
    if n:
        entry["loss"] = loss
    return entry


@pytest.mark.parametrize("entries, passed, words", [
    ([_epoch(0, None, 0.05), _epoch(1, 20.0, 0.08), _epoch(2, 15.0, 0.12)], True,
     "2 epochs, every loss finite, mAP 5.0 -> 12.0"),
    ([_epoch(0, None, 0.05), _epoch(1, 20.0, 0.04), _epoch(2, 15.0, 0.04)], False,
     "mAP did not rise over the untrained model"),
    ([_epoch(0, None, 0.05), _epoch(1, float("nan"), 0.08), _epoch(2, 15.0, 0.12)], False,
     "NON-FINITE loss"),
    ([_epoch(0, None, 0.05), _epoch(1, 20.0, 0.08)], False, "1 epochs"),
])
def test_training_must_finish_finite_and_raise_map(tmp_path, entries, passed, words):
    paths = Paths(str(tmp_path))
    _history(paths, entries)
    ok, summary, details = run_module._read_training(paths, CheckSettings(epochs=2))
    assert ok is passed and words in summary
    assert details["map_before"] == pytest.approx(0.05)
