"""One table of runtimes and suffixes: open_engine, the commands' --backend and cvnet-bench read
the same names, whatever the case of a file's suffix (device-safe: no torch)."""

import pytest

from cvnet.benchmarks.run import backend_of_path
from cvnet.core import cli
from cvnet.core.errors import ConfigError
from cvnet.core.runtimes import RUNTIME_SUFFIXES, default_runtime, opens
from cvnet.engines import HOST_SUFFIXES, NAMED_BACKENDS, backend_options, runner_class


@pytest.mark.parametrize("name, runtime", [("m.ONNX", "onnxruntime"), ("m.Plan", "tensorrt"),
                                           ("m.engine", "tensorrt"), ("m.PT", "torch"),
                                           ("m.pth", "torch"), ("m.tflite", None)])
def test_a_suffix_names_its_runtime_in_any_case(name, runtime):
    assert default_runtime(name) == runtime
    if runtime is not None:
        assert backend_of_path(name) == runtime  # cvnet-bench --engine reads the same table


def test_every_runtime_is_a_backend_name_and_opens_its_suffixes():
    assert cli.BACKENDS == tuple(RUNTIME_SUFFIXES)
    for name, (_module, _runner, suffixes) in NAMED_BACKENDS.items():
        assert suffixes == RUNTIME_SUFFIXES[name]
    assert set(HOST_SUFFIXES) == set(RUNTIME_SUFFIXES["torch"])
    assert opens("openvino", "x.ONNX") and not opens("openvino", "x.plan")


def test_an_upper_case_onnx_opens_with_onnx_runtime_and_takes_threads():
    """cvnet-embed once passed --threads only to names ending in lower-case '.onnx'."""
    assert runner_class("CVNET.ONNX").backend == "onnxruntime"
    assert backend_options("CVNET.ONNX", threads=2) == {"threads": 2}


def test_a_tensorrt_engine_is_given_no_cpu_threads():
    """cvnet-eval --threads 2 on a .plan once reached TrtRunner as an unknown keyword."""
    assert "threads" not in backend_options("cvnet.plan", threads=2)
    with pytest.raises(ConfigError, match="openvino"):
        backend_options("cvnet.plan", backend="openvino")


def test_cvnet_embed_passes_threads_to_an_upper_case_onnx(tmp_path, monkeypatch):
    """The command, not only the helper: --threads reaches the runner of 'CVNET.ONNX'."""
    import numpy as np

    import cvnet.engines
    from cvnet.jetson.cli import main

    cv2 = pytest.importorskip("cv2")
    images = tmp_path / "crops"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    seen = {}

    class Opened(Exception):
        pass

    def fake_open_engine(path, **options):
        seen.update(options, path=path)
        raise Opened()

    monkeypatch.setattr(cvnet.engines, "open_engine", fake_open_engine)
    with pytest.raises(Opened):
        main(["embed", "--engine", str(tmp_path / "CVNET.ONNX"), "--images", str(images),
              "-o", str(tmp_path / "out"), "--threads", "1"])
    assert seen["threads"] == 1
