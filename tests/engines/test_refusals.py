"""Every refusal to open a model file names the file, what is wrong and the fix.

Missing backends are simulated by blocking their import (``sys.modules[name] = None``), so the
same cases run on the host (where torch and ONNX Runtime exist) and on the device.
"""

import logging
import os
import shutil
import sys
import types

import pytest

from cvnet.core.errors import CVNetError
from cvnet.engines import open_engine
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device


def _block(monkeypatch, *modules):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _file(folder, name, data=b"\x80\x02 not a model, just bytes " * 8):
    path = os.path.join(str(folder), name)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _pt(folder, monkeypatch):
    _block(monkeypatch, "torch")
    return _file(folder, "evil.pt")


def _plan(folder, monkeypatch):
    _block(monkeypatch, "tensorrt")
    return _file(folder, "cvnet.plan")


def _plan_without_pycuda(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    _block(monkeypatch, "pycuda", "pycuda.driver")
    return _file(folder, "cvnet.engine")


def _onnx(folder, monkeypatch):
    _block(monkeypatch, "onnxruntime")
    path = os.path.join(str(folder), "cvnet.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path)
    return path


def _corrupt_onnx(folder, monkeypatch):
    pytest.importorskip("onnxruntime")
    return _file(folder, "cut.onnx")


def _corrupt_pt(folder, monkeypatch):
    pytest.importorskip("torch")
    return _file(folder, "cut.pt")


def _folder(folder, monkeypatch):
    path = os.path.join(str(folder), "models.onnx")
    os.mkdir(path)
    return path


def _plan_of_another_build(folder, monkeypatch):
    path = _file(folder, "swapped.plan")
    _file(folder, "swapped.plan.json", b'{"format": "cvnet-artifact"}')
    return path


CASES = [
    # (make the file, the error's class name, fragments of what is wrong and of the fix)
    (_pt, "MissingDependencyError",
     ["a PyTorch checkpoint needs torch", "cvnet-export", "pass the .onnx"]),
    (_plan, "MissingDependencyError",
     ["a TensorRT engine needs tensorrt", "JetPack", "run the .onnx"]),
    (_plan_without_pycuda, "MissingDependencyError",
     ["a TensorRT engine needs pycuda", "pip3 install", "run the .onnx"]),
    (_onnx, "MissingDependencyError", ["an ONNX model needs onnxruntime", "pip install"]),
    (lambda folder, _: _file(folder, "model.tflite"), "ConfigError",
     ["cannot tell the backend", ".onnx", "rename"]),
    (lambda folder, _: os.path.join(str(folder), "gone.onnx"), "EngineLoadError",
     ["no such file", "give the path"]),
    (_folder, "EngineLoadError", ["is a folder", "model file"]),
    (lambda folder, _: _file(folder, "empty.plan", b""), "EngineLoadError",
     ["empty (0 bytes)", "Copy or rebuild"]),
    (_corrupt_onnx, "EngineLoadError", ["ONNX Runtime cannot load it", "re-export"]),
    (_corrupt_pt, "CheckpointError", ["torch.save"]),
    (_plan_of_another_build, "MetadataError", ["sidecar"]),
]


@pytest.mark.parametrize("make, error, fragments", CASES,
                         ids=[case[0].__name__.strip("_") if case[0].__name__ != "<lambda>"
                              else case[1] + "-" + case[2][0].split()[0] for case in CASES])
def test_every_refusal_names_the_file_the_problem_and_the_fix(tmp_path, monkeypatch, make, error,
                                                               fragments):
    path = make(tmp_path, monkeypatch)
    with pytest.raises(CVNetError) as caught:
        with open_engine(path):
            pass
    message = str(caught.value)
    assert type(caught.value).__name__ == error, message
    assert os.path.abspath(path) in message or path in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_the_commands_pass_the_refusal_on(tmp_path, monkeypatch, caplog):
    """cvnet-embed, cvnet-bench and cvnet-eval on a checkpoint where torch is missing."""
    from cvnet.benchmarks.cli import main as bench_main
    from cvnet.engines.errors import MissingDependencyError
    from cvnet.jetson.cli import EXIT_ERROR
    from cvnet.jetson.cli import main as jetson_main
    from cvnet.jetson.eval_cli import open_model

    path = _pt(tmp_path, monkeypatch)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(os.path.join(os.path.dirname(TINY_ONNX), "images", "image_0.png"), str(images))
    expected = "{}: a PyTorch checkpoint needs torch".format(path)
    with caplog.at_level(logging.ERROR):
        assert jetson_main(["embed", "--engine", path, "--images", str(images), "-o",
                            str(tmp_path / "out")]) == EXIT_ERROR
        assert expected in caplog.text
        caplog.clear()
        assert bench_main(["--engine", path, "--batch", "1", "--min-time", "0"]) == 1
        assert expected in caplog.text
    with pytest.raises(MissingDependencyError, match="cvnet-export"):
        import contextlib
        with contextlib.ExitStack() as stack:
            open_model(path, stack)
