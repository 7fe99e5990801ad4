"""cvnet-bench on the device path: the committed tiny ONNX file, ONNX Runtime, no torch."""

import json
import os
import subprocess
import sys

import pytest

from cvnet.benchmarks.cli import main
from cvnet.benchmarks.run import BenchError, check_batches, check_request, engine_target
from tests.fixtures import TINY_ONNX

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = ["--min-time", "0", "--warmup", "1"]


def test_engine_run_times_network_and_e2e_without_torch(tmp_path):
    out = str(tmp_path / "report.json")
    script = ("import sys; from cvnet.benchmarks.cli import main; "
              "rc = main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", script, "--engine", TINY_ONNX, "--batch", "1,4",
                           "--backend", "onnxruntime", "--e2e", "--json-out", out] + QUICK,
                          cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    stdout = done.stdout.decode()
    assert "| cvnet_tiny | onnxruntime | cpu | fp32 | 4 | e2e |" in stdout
    assert "| CVNet | 4.4 | 0.05 |" in stdout
    with open(out) as handle:
        report = json.load(handle)
    rows = report["results"]
    assert [(r["batch"], r["mode"]) for r in rows] == [(1, "network"), (1, "e2e"),
                                                       (4, "network"), (4, "e2e")]
    assert all(r["params"] == 53194 and r["runs"] >= 5 and r["throughput"] > 0 for r in rows)
    assert report["environment"]["torch"] is None
    assert "cvnet_tiny onnxruntime e2e/network b4" in report["ratios"]


def test_missing_engine_is_reported(tmp_path, caplog):
    assert main(["--engine", str(tmp_path / "gone.onnx")] + QUICK) == 1
    assert "no such file" in caplog.text


def test_unknown_backend_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backend", "tvm"])
    assert exit_info.value.code == 2
    assert "unknown backend tvm" in capsys.readouterr().err
    with pytest.raises(BenchError, match="unknown backend"):
        check_request("tvm", "cpu", "fp32")


def test_batch_larger_than_the_engine_allows(caplog, capsys):
    assert main(["--engine", TINY_ONNX, "--batch", "1,16"] + QUICK) == 1
    assert "runs batches 1..8, not 16" in caplog.text
    assert capsys.readouterr().out == ""  # nothing timed, nothing printed
    with pytest.raises(BenchError, match="runs batches 2..4, not 1,8"):
        check_batches([1, 2, 8], 2, 4, "m.onnx")


def test_backend_that_cannot_open_the_file(caplog):
    assert main(["--engine", TINY_ONNX, "--backend", "tensorrt"] + QUICK) == 1
    assert "--backend tensorrt cannot run" in caplog.text
    with pytest.raises(BenchError, match="from its suffix"):
        engine_target(os.path.join(ROOT, "README.md"), backend=None, device=None,
                      precision="fp32", threads=1, input_size=(64, 64), arch=None,
                      batch_max=1)


def test_requests_no_backend_runs():
    with pytest.raises(BenchError, match="FP16 needs a GPU"):
        check_request("torch", "cpu", "fp16")
    with pytest.raises(BenchError, match="GPU only"):
        check_request("tensorrt", "cpu", "fp32")
    with pytest.raises(BenchError, match="bf16 is OpenVINO's"):
        check_request("onnxruntime", "cpu", "bf16")
    with pytest.raises(BenchError, match="OpenVINO on the CPU at fp32 or bf16"):
        check_request("openvino", "cuda", "fp32")


def test_baselines_need_the_host(caplog):
    assert main(["--engine", TINY_ONNX, "--baselines"] + QUICK) == 1
    assert "run it without --engine" in caplog.text


def test_baselines_run_on_the_same_backend_and_a_failure_skips_one(monkeypatch, tmp_path):
    from cvnet.benchmarks import models
    from cvnet.benchmarks.models import PreparedModel

    def fake_prepare(arch, input_size, batch_max, half, cache, onnx, ort_graph=False):
        if arch == "mgn":
            raise BenchError("mgn cannot be exported")
        return PreparedModel(arch=arch, checkpoint="", onnx=TINY_ONNX, params=1000000 * len(arch),
                             gmacs=1.0, input_size=input_size)

    monkeypatch.setattr(models, "prepare_model", fake_prepare)
    out = str(tmp_path / "r.json")
    assert main(["--baselines", "--backend", "onnxruntime", "--batch", "1", "--input-size", "64",
                 "--json-out", out] + QUICK) == 0
    with open(out) as handle:
        report = json.load(handle)
    assert [r["model"] for r in report["results"]] == [
        "cvnet", "pplr", "bot", "transreid", "starnet_s1", "mobileone_s1", "sbcformer_xs",
        "fasternet_t1"]
    records = {r["method"]: r for r in report["comparison"]}
    assert records["MGN"]["fps_measured"] == {}
    assert records["BoT"]["params_m_measured"] == 3.0
    assert set(records["BoT"]["cvnet_speedup"]) == {"onnxruntime"}


def test_overload_warning_only_above_the_core_count():
    from cvnet.engines.machine import overload_warning

    assert overload_warning([1.9, 1.0, 0.5], 2) is None
    assert overload_warning([2.0, 1.0, 0.5], 2) is None
    assert overload_warning(None, 2) is None
    text = overload_warning([3.4, 2.0, 1.0], 2)
    assert "load average is 3.4 on 2 CPUs" in text and "noisy" in text


def test_a_loaded_machine_is_warned_about_and_the_run_still_happens(monkeypatch, caplog, capsys):
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 8.0, 7.0))
    monkeypatch.setattr("cvnet.benchmarks.cli.usable_cpus", lambda: 4)
    assert main(["--engine", TINY_ONNX, "--batch", "1"] + QUICK) == 0
    assert "the 1-minute load average is 9.0 on 4 CPUs" in caplog.text
    assert "| cvnet_tiny | onnxruntime | cpu | fp32 | 1 | network |" in capsys.readouterr().out
    caplog.clear()
    monkeypatch.setattr("os.getloadavg", lambda: (0.5, 0.5, 0.5))
    assert main(["--engine", TINY_ONNX, "--batch", "1"] + QUICK) == 0
    assert "load average" not in caplog.text
