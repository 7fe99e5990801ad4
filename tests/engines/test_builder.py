"""The builder's decisions as pure logic, and what it refuses before TensorRT is needed.

Real builds are in test_trt_runner.py (marked trt/gpu). Here: batch profiles, the precision
decision per TensorRT generation, which layers ``--keep-fp32 attention`` selects, the opset check,
and the errors a build gives without TensorRT, without calibration images or with a sidecar that
belongs to another file.
"""

import logging
import shutil

import numpy as np
import pytest

from cvnet.core.artifact import read_sidecar
from cvnet.core.errors import ConfigError, MetadataError
from cvnet.engines import trt_compat
from cvnet.engines.build_policy import (BuildOptions, attention_layers, check_parser_opset,
                                        decide_precision, default_batch, parse_batch,
                                        profile_shapes)
from cvnet.engines.builder import build_engine, parity_record
from cvnet.engines.calibrator import Int8Calibration, calibration_batches, calibration_files
from cvnet.engines.errors import EngineBuildError, MissingDependencyError
from cvnet.engines.spec import spec_from_metadata
from cvnet.engines.trt_compat import LayerSummary
from tests.engines import fake_tensorrt as fake
from tests.fixtures import TINY_IMAGES, TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def metadata():
    return read_sidecar(TINY_ONNX)


@pytest.mark.parametrize("text, expected", [("1:8:32", (1, 8, 32)), ("2:16", (2, 16, 16)),
                                            ("4", (4, 4, 4))])
def test_parse_batch(text, expected):
    assert parse_batch(text) == expected


@pytest.mark.parametrize("text", ["8:1:32", "0:1:2", "a:b:c", "1:2:3:4", ""])
def test_parse_batch_rejects(text):
    with pytest.raises(ConfigError, match="MIN:OPT:MAX"):
        parse_batch(text)


def test_default_batch_is_the_sidecars_range_tuned_for_8(metadata):
    assert default_batch(metadata) == (1, 8, 8)
    assert default_batch(metadata._replace(batch_min=1, batch_max=32)) == (1, 8, 32)
    assert default_batch(metadata._replace(batch_min=2, batch_max=4)) == (2, 4, 4)
    assert default_batch(None) == (1, 8, 32)


def test_profile_for_a_dynamic_batch(metadata):
    assert profile_shapes("images", (-1, 3, 64, 64), (1, 4, 8), metadata) == (
        (1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))


def test_profile_fills_dynamic_image_dimensions_from_the_sidecar(metadata):
    assert profile_shapes("images", (-1, 3, -1, -1), (1, 2, 2), metadata)[0] == (1, 3, 64, 64)
    with pytest.raises(EngineBuildError, match="fixed size"):
        profile_shapes("images", (-1, 3, -1, -1), (1, 2, 2), None)


def test_static_batch_needs_no_profile_and_a_requested_range_is_ignored_loudly(metadata, caplog):
    assert profile_shapes("images", (4, 3, 64, 64), None, metadata) is None
    assert "static batch" not in caplog.text
    assert profile_shapes("images", (4, 3, 64, 64), (1, 8, 8), metadata) is None
    assert "static batch of 4" in caplog.text


def test_default_profile_comes_from_the_sidecar(metadata):
    assert profile_shapes("images", (-1, 3, 64, 64), None, metadata)[1] == (8, 3, 64, 64)


@pytest.mark.parametrize("mode, want, graph, expected, warns", [
    (trt_compat.FP16_BUILDER_FLAG, True, "fp32", ("fp16", True), None),
    (trt_compat.FP16_BUILDER_FLAG, False, "fp32", ("fp32", False), None),
    (trt_compat.FP16_NOT_FAST, True, "fp32", ("fp32", False), "no fast FP16"),
    (trt_compat.FP16_FROM_ONNX_TYPES, True, "fp32", ("fp32", False),
     "cvnet-export --precision fp16"),
    (trt_compat.FP16_FROM_ONNX_TYPES, True, None, ("fp32", False), "precision is unknown"),
    (trt_compat.FP16_FROM_ONNX_TYPES, True, "fp16", ("fp16", False), None),
    (trt_compat.FP16_FROM_ONNX_TYPES, False, "fp16", ("fp16", False),
     "--precision fp32 has no effect"),
])
def test_precision_decision(mode, want, graph, expected, warns):
    precision, set_flag, warning = decide_precision(mode, want, graph)
    assert (precision, set_flag) == expected
    if warns is None:
        assert warning is None
    else:
        assert warns in warning


# Layers as the ONNX parser names them: one per ONNX node of cvnet's eval graph (shortened).
CVNET_LAYERS = [
    LayerSummary("/stem/conv/Conv", "CONVOLUTION", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/Flatten", "SHUFFLE", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/Transpose", "SHUFFLE", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/MatMul", "MATRIX_MULTIPLY", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/ReduceMax", "REDUCE", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/Sub", "ELEMENTWISE", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/Softmax", "SOFTMAX", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/MatMul_1", "MATRIX_MULTIPLY", True),
    LayerSummary("/stages.0/stages.0.0/filters.1/Shape", "SHAPE", False),
    LayerSummary("/stages.0/stages.0.0/filters.1/Constant", "CONSTANT", True),
    LayerSummary("/stages.0/stages.0.0/collaboration/ReduceMax", "REDUCE", True),
    LayerSummary("/stages.0/stages.0.0/collaboration/Softmax", "SOFTMAX", True),
    LayerSummary("(Unnamed Layer* 12) [Shuffle]", "SHUFFLE", True),
]


def test_attention_layers_are_the_float_layers_of_scopes_with_matmul_and_softmax():
    assert attention_layers(CVNET_LAYERS) == [
        "/stages.0/stages.0.0/filters.1/" + name
        for name in ("Flatten", "Transpose", "MatMul", "ReduceMax", "Sub", "Softmax", "MatMul_1")]


def test_keep_fp32_selects_exactly_the_attention_nodes_of_the_real_graph():
    """The selection on the node names the TorchScript exporter writes for cvnet_tiny.

    TensorRT's ONNX parser names each layer after its node; this maps op types to the layer
    types the parser creates (an approximation: it can add unnamed helper layers, which never
    match a scope) and checks that exactly the FilterAttention nodes are picked.
    """
    onnx = pytest.importorskip("onnx")
    kinds = {"MatMul": "MATRIX_MULTIPLY", "Softmax": "SOFTMAX", "ReduceMax": "REDUCE",
             "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Add": "ELEMENTWISE",
             "Transpose": "SHUFFLE", "Reshape": "SHUFFLE", "Flatten": "SHUFFLE",
             "Constant": "CONSTANT", "Shape": "SHAPE", "Gather": "GATHER"}
    nodes = onnx.load(TINY_ONNX).graph.node
    layers = [LayerSummary(n.name, kinds.get(n.op_type, n.op_type.upper()),
                           n.op_type not in ("Shape", "Gather", "Constant")) for n in nodes]
    selected = attention_layers(layers)
    matmuls = [n.name for n in nodes if n.op_type == "MatMul"]
    assert matmuls and set(matmuls) <= set(selected)
    assert all("/filters." in name for name in selected)
    assert not any("collaboration" in name for name in selected)
    softmaxes = [n.name for n in nodes if n.op_type == "Softmax" and "/filters." in n.name]
    assert softmaxes and set(softmaxes) <= set(selected)


def test_opset_newer_than_the_parser_reads_is_refused_before_parsing(metadata):
    check_parser_opset(metadata, "8.2.1.8", TINY_ONNX)  # opset 13: fine
    with pytest.raises(EngineBuildError, match=r"opset 17.*up to 13.*--opset 13"):
        check_parser_opset(metadata._replace(opset=17), "8.2.1.8", TINY_ONNX)
    check_parser_opset(metadata._replace(opset=17), "10.3.0", TINY_ONNX)


def test_parity_figures_and_thresholds():
    reference = np.random.RandomState(0).randn(8, 8).astype(np.float32)
    same = parity_record(reference, reference.copy(), "fp32")
    assert same["passed"] is True and same["min_cosine"] == 1.0
    assert same["top1_agreement"] == same["top5_agreement"] == 1.0  # retrieval agreement too
    noisy = parity_record(reference, reference + 0.5, "fp16")
    assert noisy["passed"] is False and noisy["min_cosine_required"] == 0.999
    assert parity_record(reference, reference, "int8")["passed"] is None  # reported, not judged
    shuffled = parity_record(reference, reference[::-1].copy(), "fp32")
    assert shuffled["top1_agreement"] < 1.0


@pytest.fixture
def onnx_copy(tmp_path):
    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path)
    return path


def test_build_without_tensorrt_says_what_to_install(onnx_copy):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingDependencyError) as caught:
        build_engine(onnx_copy)
    message = str(caught.value)
    assert message.startswith("{}: building a TensorRT engine needs tensorrt, which cannot be "
                              "imported here".format(onnx_copy))
    assert "JetPack" in message and "--system-site-packages" in message


def test_build_refuses_a_missing_onnx(tmp_path):
    with pytest.raises(EngineBuildError, match="no such file"):
        build_engine(str(tmp_path / "missing.onnx"))


def test_build_refuses_an_onnx_that_does_not_match_its_sidecar(onnx_copy):
    copy_sidecar(onnx_copy, onnx_sha256="1" * 64)
    with pytest.raises(MetadataError, match="different exports"):
        build_engine(onnx_copy)


def test_int8_needs_calibration_images(onnx_copy):
    with pytest.raises(ConfigError, match="--calib DIR"):
        build_engine(onnx_copy, options=BuildOptions(int8=True))


def test_int8_is_refused_on_a_nano_like_gpu_before_any_image_is_read(metadata, tmp_path):
    trt = fake.tensorrt("8.2.1", fast_int8=False)
    builder = trt.Builder(trt_compat.make_logger(trt))
    config = builder.create_builder_config()
    options = BuildOptions(int8=True, calib_dir=str(tmp_path / "not-read"))
    with pytest.raises(EngineBuildError,
                       match=r"--precision int8 is not possible here: .*Jetson Nano"):
        with Int8Calibration(trt, builder, config, options, metadata, "images", (8, 3, 64, 64),
                             str(tmp_path / "calib"), "0" * 64):
            pass
    assert fake.flags(config) == []


def test_calibration_images_are_found_spread_and_bad_files_skipped(metadata, tmp_path, caplog):
    for i, path in enumerate(sorted(calibration_files(TINY_IMAGES, 100))):
        shutil.copy(path, str(tmp_path / "{}.png".format(i)))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    files = calibration_files(str(tmp_path), 100)
    assert len(files) == 8
    assert len(calibration_files(str(tmp_path), 3)) == 3
    with caplog.at_level(logging.INFO):
        batches = list(calibration_batches(files, spec_from_metadata(metadata), 3))
    # 7 images decode (the broken one is skipped): two whole batches, the 7th is left out
    # rather than padded with zeros
    assert [len(b) for b in batches] == [3, 3]
    assert batches[0].shape == (3, 3, 64, 64) and batches[0].dtype == np.float32
    assert "skipped" in caplog.text
    assert "the last 1 image(s) do not fill a batch of 3" in caplog.text


def test_calibration_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError, match=r"--calib .*: no image file .*notes\.txt.*\.jpg"):
        calibration_files(str(tmp_path), 10)
    with pytest.raises(EngineBuildError, match="no such folder"):
        calibration_files(str(tmp_path / "missing"), 10)
