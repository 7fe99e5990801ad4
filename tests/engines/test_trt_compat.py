"""Which TensorRT calls cvnet.engines.trt_compat makes on each release's API.

The objects are stand-ins derived from the real API surfaces of TensorRT 8.2.1 (from NVIDIA's
sources), 8.6.1, 10.3.0 and 11.4.0.106 (from NVIDIA's wheels) in tests/engines/fake_tensorrt.py:
an attribute a release lacks, or an argument name it does not have, fails here as it would
there. These tests prove which calls the compatibility layer makes, with which names, on each
release's API. They prove nothing about TensorRT's behaviour, nor that a build or an inference
succeeds: that needs a GPU with TensorRT (tests marked trt/gpu).
"""

import logging
import types

import numpy as np
import pytest

from cvnet.engines import trt_compat
from tests.engines import fake_tensorrt as fake

pytestmark = pytest.mark.device

ALL = fake.VERSIONS
BINDINGS_API = ("8.2.1",)
TENSOR_API = ("8.6.1", "10.3.0", "11.4.0.106")


def _builder(trt):
    builder = trt.Builder(trt_compat.make_logger(trt))
    return builder, builder.create_builder_config()


def test_version_tuples_compare_numerically():
    assert trt_compat.version_tuple("8.2.1.8") == (8, 2, 1, 8)
    assert trt_compat.version_tuple("10.13.0") > trt_compat.version_tuple("10.3.0")
    assert trt_compat.same_tensorrt_release("8.2.1.8", "8.2.1.9")
    assert not trt_compat.same_tensorrt_release("8.2.1.8", "8.2.3.0")
    assert not trt_compat.same_tensorrt_release("8.6.1", "10.3.0")


@pytest.mark.parametrize("version, flags", [("8.2.1", 1), ("8.6.1", 1), ("10.3.0", 0),
                                            ("11.4.0.106", 0)])
def test_network_gets_the_explicit_batch_bit_only_before_10(version, flags):
    trt = fake.tensorrt(version)
    builder, _ = _builder(trt)
    trt_compat.create_network(builder, trt)
    assert trt._log.of("Builder.create_network") == [{"flags": flags}]


def test_workspace_on_8_2_is_the_attribute():
    trt = fake.tensorrt("8.2.1")
    _, config = _builder(trt)
    assert trt_compat.set_workspace(config, trt, 512 << 20) == "max_workspace_size"
    assert config.max_workspace_size == 512 << 20


@pytest.mark.parametrize("version", TENSOR_API)
def test_workspace_from_8_4_is_a_memory_pool_limit(version):
    trt = fake.tensorrt(version)
    _, config = _builder(trt)
    assert trt_compat.set_workspace(config, trt, 256 << 20) == "set_memory_pool_limit"
    assert trt._log.of("IBuilderConfig.set_memory_pool_limit") == [
        {"pool": trt.MemoryPoolType.WORKSPACE, "pool_size": 256 << 20}]


@pytest.mark.parametrize("version", ("8.2.1", "8.6.1", "10.3.0"))
def test_fp16_flag_is_set_where_it_exists_and_the_gpu_is_fast(version):
    trt = fake.tensorrt(version)
    builder, config = _builder(trt)
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_BUILDER_FLAG
    assert trt_compat.enable_fp16(builder, config, trt) is True
    assert fake.flags(config) == ["FP16"]


def test_fp16_flag_is_not_set_without_fast_fp16():
    trt = fake.tensorrt("8.2.1", fast_fp16=False)
    builder, config = _builder(trt)
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_NOT_FAST
    assert trt_compat.enable_fp16(builder, config, trt) is False
    assert fake.flags(config) == []


def test_tensorrt_11_has_no_fp16_flag_and_is_not_asked_for_one():
    trt = fake.tensorrt("11.4.0.106")
    builder, config = _builder(trt)
    assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(builder,
                                                                "platform_has_fast_fp16")
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_FROM_ONNX_TYPES
    assert trt_compat.enable_fp16(builder, config, trt) is False
    assert fake.flags(config) == []


@pytest.mark.parametrize("version, flag", [("8.2.1", "OBEY_PRECISION_CONSTRAINTS"),
                                           ("8.6.1", "OBEY_PRECISION_CONSTRAINTS"),
                                           ("10.3.0", "OBEY_PRECISION_CONSTRAINTS"),
                                           ("11.4.0.106", None)])
def test_precision_constraint_flag_by_feature(version, flag):
    assert trt_compat.precision_constraint_flag(fake.tensorrt(version)) == flag


def test_strict_types_is_the_precision_flag_where_it_is_the_only_one():
    """TensorRT 8.0 (JetPack 4.6.0) has only STRICT_TYPES; no surface of 8.0 is committed."""
    trt = types.SimpleNamespace(BuilderFlag=types.SimpleNamespace(STRICT_TYPES=4))
    assert trt_compat.precision_constraint_flag(trt) == "STRICT_TYPES"


LAYERS = (fake.LayerSpec("/a/MatMul", "MATRIX_MULTIPLY"), fake.LayerSpec("/a/Softmax", "SOFTMAX"),
          fake.LayerSpec("/b/Conv", "CONVOLUTION"), fake.LayerSpec("/a/Shape", "SHAPE", ("INT32",)))


def _network(version):
    trt = fake.tensorrt(version, layers=LAYERS)
    builder, config = _builder(trt)
    return trt, trt_compat.create_network(builder, trt), config


@pytest.mark.parametrize("version", ("8.2.1", "8.6.1", "10.3.0"))
def test_pinning_sets_layer_precision_output_types_and_the_obey_flag(version):
    trt, network, config = _network(version)
    assert trt_compat.pin_layers_fp32(network, config, trt, ["/a/MatMul", "/a/Softmax"]) == [
        "/a/MatMul", "/a/Softmax"]
    assert trt._log.of("ILayer.precision=") == [{"value": trt.float32}] * 2
    assert trt._log.of("ILayer.set_output_type") == [{"index": 0, "dtype": trt.float32}] * 2
    assert fake.flags(config) == ["OBEY_PRECISION_CONSTRAINTS"]


def test_pinning_is_a_no_op_on_strongly_typed_tensorrt_11():
    trt, network, config = _network("11.4.0.106")
    assert not hasattr(network.get_layer(0), "precision")  # removed in 11.x
    assert trt_compat.pin_layers_fp32(network, config, trt, ["/a/MatMul"]) == []
    assert fake.flags(config) == []


@pytest.mark.parametrize("version", ALL)
def test_network_layers_report_type_names_and_shape_tensors(version):
    trt, network, _ = _network(version)
    layers = trt_compat.network_layers(network, trt)
    assert [(l.name, l.type, l.float_outputs) for l in layers] == [
        ("/a/MatMul", "MATRIX_MULTIPLY", True), ("/a/Softmax", "SOFTMAX", True),
        ("/b/Conv", "CONVOLUTION", True), ("/a/Shape", "SHAPE", False)]


def _parser(version, errors):
    trt = fake.tensorrt(version, parse_errors=errors)
    builder, _ = _builder(trt)
    logger = trt_compat.make_logger(trt)
    parser = trt.OnnxParser(trt_compat.create_network(builder, trt), logger)
    assert parser.parse_from_file("model.onnx") is False
    return parser


@pytest.mark.parametrize("version", ("8.2.1", "8.6.1"))
def test_parser_errors_before_10_name_the_node_index(version):
    parser = _parser(version, (fake.ParseErrorSpec("Unsupported ONNX opset 17", 3),
                               fake.ParseErrorSpec("Resize scales must be an initializer", 12)))
    lines = trt_compat.parser_errors(parser)
    assert len(lines) == 2
    assert lines[0].startswith("node 3: Unsupported ONNX opset 17")
    assert "node 12" in lines[1] and "ErrorCode.UNSUPPORTED_NODE" in lines[1]


@pytest.mark.parametrize("version", ("10.3.0", "11.4.0.106"))
def test_parser_errors_from_10_add_node_name_and_operator(version):
    parser = _parser(version, (fake.ParseErrorSpec("no importer", 7, "/stem/Mod", "Mod"),))
    assert trt_compat.parser_errors(parser) == [
        "node 7 /stem/Mod Mod: no importer (code ErrorCode.UNSUPPORTED_NODE)"]


def _attach(version, how, data):
    trt = fake.tensorrt(version, timing_cache=how)
    builder, config = _builder(trt)
    status, said = trt_compat.attach_timing_cache(config, data, builder._logger)
    return trt, config, status, said


@pytest.mark.parametrize("version", ALL)
def test_a_timing_cache_tensorrt_takes_is_used(version):
    trt, config, status, said = _attach(version, "accept", b"from this gpu")
    assert (status, said) == (trt_compat.TIMING_CACHE_USED, [])
    assert [bytes(c["serialized_timing_cache"]) for c in
            trt._log.of("IBuilderConfig.create_timing_cache")] == [b"from this gpu"]
    assert trt._log.of("IBuilderConfig.set_timing_cache")[0]["ignore_mismatch"] is False


@pytest.mark.parametrize("version", ALL)
def test_a_foreign_timing_cache_is_replaced_with_a_fresh_one(version):
    trt, config, status, _ = _attach(version, "foreign", b"from another gpu")
    assert status == trt_compat.TIMING_CACHE_REFUSED
    assert [bytes(c["serialized_timing_cache"]) for c in
            trt._log.of("IBuilderConfig.create_timing_cache")] == [b"from another gpu", b""]
    assert config.get_timing_cache()._data == b""


@pytest.mark.parametrize("version", ALL)
def test_a_corrupt_timing_cache_create_returning_none_is_replaced(version):
    trt, config, status, said = _attach(version, "corrupt", b"\x00garbage")
    assert status == trt_compat.TIMING_CACHE_REFUSED
    assert said == list(fake.CORRUPT_CACHE_LOG)
    assert len(trt._log.of("IBuilderConfig.set_timing_cache")) == 1  # only the fresh one
    assert config.get_timing_cache()._data == b""


def test_a_cache_tensorrt_takes_but_says_it_will_not_use_is_replaced():
    trt, config, status, said = _attach("8.6.1", "complains", b"stale")
    assert status == trt_compat.TIMING_CACHE_REFUSED
    assert said == ["4: The timing cache will not be used!"]
    assert config.get_timing_cache()._data == b""


def test_tensorrt_messages_go_to_python_logging(caplog):
    trt = fake.tensorrt("8.2.1")
    logger = trt_compat.make_logger(trt)
    with caplog.at_level(logging.DEBUG, logger="tensorrt"):
        logger.log(trt.ILogger.Severity.WARNING, "slow tactic")
        logger.log(trt.ILogger.Severity.INFO, "detail")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", "slow tactic")]
    assert logger.complaints == ["slow tactic"]
    verbose = trt_compat.make_logger(trt, verbose=True)
    with caplog.at_level(logging.DEBUG, logger="tensorrt"):
        verbose.log(trt.ILogger.Severity.VERBOSE, "every tactic")
    assert caplog.records[-1].getMessage() == "every tactic" and verbose.complaints == []


def test_int8_is_refused_on_a_gpu_without_fast_int8_like_the_nano():
    trt = fake.tensorrt("8.2.1", fast_int8=False)
    possible, reason = trt_compat.int8_support(_builder(trt)[0], trt)
    assert not possible and "Jetson Nano" in reason


def test_int8_is_refused_on_tensorrt_11_which_has_no_int8_flag_nor_calibrators():
    trt = fake.tensorrt("11.4.0.106")
    assert not hasattr(trt.BuilderFlag, "INT8") and not hasattr(trt, "IInt8EntropyCalibrator2")
    possible, reason = trt_compat.int8_support(_builder(trt)[0], trt)
    assert not possible and "no INT8 calibrators" in reason


@pytest.mark.parametrize("version", ("8.2.1", "8.6.1", "10.3.0"))
def test_int8_sets_flag_calibrator_and_calibration_profile(version):
    trt = fake.tensorrt(version)
    builder, config = _builder(trt)
    assert trt_compat.int8_support(builder, trt) == (True, "")
    profile = trt_compat.make_profile(builder, "images", [(8, 3, 64, 64)] * 3)
    calibrator = object()
    trt_compat.enable_int8(config, trt, calibrator, profile)
    assert fake.flags(config) == ["INT8"] and config.int8_calibrator is calibrator
    assert trt._log.of("IBuilderConfig.set_calibration_profile") == [{"profile": profile}]


def _engine(version, **scenario):
    trt = fake.tensorrt(version, **scenario)
    engine = trt.Runtime(trt_compat.make_logger(trt)).deserialize_cuda_engine(b"PLAN")
    return trt, engine, engine.create_execution_context()


def test_io_and_execution_on_8_2_use_the_bindings_api():
    trt, engine, context = _engine("8.2.1")
    tensors = trt_compat.io_tensors(engine, trt)
    assert [(t.name, t.is_input, t.shape, t.dtype.name, t.index) for t in tensors] == [
        ("images", True, (-1, 3, 64, 64), "float32", 0),
        ("embeddings", False, (-1, 96), "float32", 1)]
    assert trt_compat.profile_shapes(engine, tensors[0])[2] == (8, 3, 64, 64)
    assert trt_compat.context_shape(context, tensors[1]) == (-1, 96)
    assert trt_compat.set_input_shape(context, tensors[0], (2, 3, 64, 64))
    assert trt_compat.context_shape(context, tensors[1]) == (2, 96)
    assert trt_compat.execute(context, list(reversed(tensors)), [2000, 1000], 77)
    assert trt._log.of("ICudaEngine.get_profile_shape") == [{"profile_index": 0, "binding": 0}]
    assert trt._log.of("IExecutionContext.set_binding_shape") == [
        {"binding": 0, "shape": (2, 3, 64, 64)}]
    assert trt._log.of("IExecutionContext.execute_async_v2") == [
        {"bindings": [1000, 2000], "stream_handle": 77}]


@pytest.mark.parametrize("version", TENSOR_API)
def test_io_and_execution_from_8_6_use_the_tensor_api(version):
    trt, engine, context = _engine(version)
    tensors = trt_compat.io_tensors(engine, trt)
    assert [(t.name, t.is_input) for t in tensors] == [("images", True), ("embeddings", False)]
    assert trt_compat.profile_shapes(engine, tensors[0])[0] == (1, 3, 64, 64)
    assert trt_compat.set_input_shape(context, tensors[0], (2, 3, 64, 64))
    assert trt_compat.context_shape(context, tensors[1]) == (2, 96)
    assert trt_compat.execute(context, tensors, [1000, 2000], 77)
    names = [name for name in trt._log.names() if name.startswith(("ICudaEngine.get_",
                                                                  "IExecutionContext."))]
    assert "ICudaEngine.get_binding_shape" not in names  # 8.6 has both APIs: tensor API used
    assert trt._log.of("IExecutionContext.set_tensor_address") == [
        {"name": "images", "memory": 1000}, {"name": "embeddings", "memory": 2000}]
    assert trt._log.of("IExecutionContext.execute_async_v3") == [{"stream_handle": 77}]


@pytest.mark.parametrize("version", ALL)
def test_fp16_inputs_and_outputs_are_reported_as_float16(version):
    io = (fake.TensorSpec("images", True, (-1, 3, 64, 64), "HALF"),
          fake.TensorSpec("embeddings", False, (-1, 96), "HALF"))
    trt, engine, _ = _engine(version, io=io)
    assert [t.dtype for t in trt_compat.io_tensors(engine, trt)] == [np.float16, np.float16]


def test_8_2_nptype_without_np_bool_falls_back_to_names(monkeypatch):
    """TensorRT 8.2's nptype reads np.bool, which numpy 1.24-1.26 lack."""
    trt = fake.tensorrt("8.2.1")
    monkeypatch.delattr(np, "bool", raising=False)
    with pytest.raises(AttributeError):
        trt.nptype(trt.float16)
    assert trt_compat.numpy_dtype(trt, trt.float16) == np.float16
    assert trt_compat.numpy_dtype(trt, trt.bool) == np.bool_


@pytest.mark.parametrize("version", ALL)
def test_rejected_input_shape_is_reported(version):
    trt, engine, context = _engine(version, accept_shapes=False)
    tensor = trt_compat.io_tensors(engine, trt)[0]
    assert trt_compat.set_input_shape(context, tensor, (64, 3, 64, 64)) is False
