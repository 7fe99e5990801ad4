"""``python3 -m cvnet.engines``, ``cvnet-build``: help anywhere, clear failures without TensorRT."""

import json
import shutil
import subprocess
import sys

import pytest

from cvnet.engines.cli import build_main, main
from tests.device_modules import ROOT
from tests.engines.test_trt_runner import _write_plan
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device


def _tensorrt_installed():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_module_help_lists_the_subcommands():
    result = subprocess.run([sys.executable, "-m", "cvnet.engines", "--help"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    assert result.returncode == 0, result.stderr
    for command in ("build", "info", "env"):
        assert command in result.stdout


@pytest.mark.parametrize("argv", [["build", "--help"], ["info", "--help"], ["env", "--help"]])
def test_subcommand_help(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python3 -m cvnet.engines " + argv[0] in out


def test_cvnet_build_help_says_what_this_machine_has(capsys):
    with pytest.raises(SystemExit):
        build_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: cvnet-build" in out and "--keep-fp32 {attention,none}" in out
    assert "TensorRT's Python bindings (here: {})".format(
        "found" if _tensorrt_installed() else "NOT FOUND") in out


def test_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


def test_build_without_tensorrt_fails_saying_what_is_missing(tmp_path, caplog):
    if _tensorrt_installed():
        pytest.skip("TensorRT is installed here")
    onnx = str(tmp_path / "cvnet.onnx")
    shutil.copy(TINY_ONNX, onnx)
    copy_sidecar(onnx)
    assert build_main([onnx]) == 1
    assert "{}: building a TensorRT engine needs tensorrt".format(onnx) in caplog.text
    assert not (tmp_path / "cvnet.plan").exists()


def test_bad_batch_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        build_main([TINY_ONNX, "--batch", "8:1:2"])
    assert caught.value.code == 2
    assert "MIN:OPT:MAX" in capsys.readouterr().err


def test_info_on_an_onnx(capsys):
    assert main(["info", TINY_ONNX]) == 0
    out = capsys.readouterr().out
    assert "cvnet_tiny" in out and "'images' NCHW 64x64 float32" in out and "96-d" in out


def test_info_shows_the_run_time_precisions_checked_at_export(tmp_path, capsys):
    from tests.engines.test_ov_runner import _record

    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path, verification={"passed": True, "runtime_checks": [
        _record("fp32", True), _record("bf16", False)]},
        optimized_for={"runtime": "onnxruntime", "rewrites": {"channel_mean": 12}})
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "checked    openvino fp32: passed, cosine min 1.000000" in out
    assert "openvino bf16: FAILED (refused at run time), cosine min" in out
    assert "rewritten  for onnxruntime: {'channel_mean': 12}" in out


def test_info_on_a_plan_says_whether_it_runs_here(tmp_path, capsys):
    plan = _write_plan(tmp_path)
    assert main(["info", plan, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"]["tensorrt_version"] == "8.2.1.8"
    if not _tensorrt_installed():
        assert report["this_machine"]["problems"] is None  # cannot tell without TensorRT
    assert main(["info", plan + ".json"]) == 0
    assert "runs here" in capsys.readouterr().out


def test_info_shows_the_build_time_parity_with_retrieval_agreement(tmp_path, capsys):
    import numpy as np

    from cvnet.engines.builder import parity_record

    reference = np.random.RandomState(0).randn(8, 16)
    plan = _write_plan(tmp_path, parity=parity_record(reference, reference + 0.01, "fp16"))
    assert main(["info", plan]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "parity" in l)
    assert "vs onnxruntime (CPU provider) on 8 images" in line
    assert "top-1/top-5 agreement 100%/100%" in line


def test_info_on_a_file_without_sidecar_fails_with_the_reason(tmp_path, caplog):
    assert main(["info", str(tmp_path / "x.onnx")]) == 1
    assert "cannot read the sidecar" in caplog.text


def test_env_lists_the_packages(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "numpy", "cv2", "onnxruntime", "tensorrt", "pycuda", "gpu"):
        assert name in out


def test_cvnet_build_device_option_builds_on_that_gpu(tmp_path, monkeypatch, capsys):
    """On stand-ins of TensorRT 10.3.0 and a CUDA driver with two GPUs (nothing is built)."""
    from tests.engines import fake_gpu
    from tests.engines import fake_tensorrt as fake

    gpu = fake_gpu.FakeGpu([fake_gpu.NANO, fake_gpu.DESKTOP])
    gpu.install(monkeypatch)
    trt = fake.tensorrt("10.3.0", gpu=gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx = str(tmp_path / "cvnet.onnx")
    shutil.copy(TINY_ONNX, onnx)
    copy_sidecar(onnx)
    assert build_main([onnx, "--device", "cuda:1", "--no-verify"]) == 0
    assert fake_gpu.DESKTOP[0] in capsys.readouterr().out
    assert [e for e in gpu.events if e.startswith(("retain", "push"))] == ["retain 1", "push 1"]
    assert gpu.problems() == []
