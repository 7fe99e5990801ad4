"""Which TensorRT calls engines.trt_compat picks on each version's API surface.

The objects are stand-ins (tests/engines/fake_tensorrt.py) that implement only the attributes
tensorrt.md section 2 lists for TensorRT 8.0, 8.2, 8.5, 10.x and 11.x. These tests prove which
calls the compatibility layer makes on each surface. They do not prove that TensorRT works, nor
that a build or an inference succeeds: that needs a GPU with TensorRT (tests marked trt/gpu).
"""

import pytest

from engines import trt_compat
from tests.engines import fake_tensorrt as fake

pytestmark = pytest.mark.device


def test_version_tuples_compare_numerically():
    assert trt_compat.version_tuple("8.2.1.8") == (8, 2, 1, 8)
    assert trt_compat.version_tuple("10.13.0") > trt_compat.version_tuple("10.3.0")
    assert trt_compat.same_tensorrt_release("8.2.1.8", "8.2.1.9")
    assert not trt_compat.same_tensorrt_release("8.2.1.8", "8.2.3.0")
    assert not trt_compat.same_tensorrt_release("8.6.1", "10.3.0")


@pytest.mark.parametrize("version, flags", [("8.2.1.8", 1), ("8.6.1", 1), ("10.3.0", 0),
                                            ("11.4.0.106", 0)])
def test_network_gets_the_explicit_batch_bit_only_before_10(version, flags):
    calls = fake.Calls()
    trt, builder, _ = fake.surface(version, calls)
    assert trt_compat.create_network(builder, trt) == "network"
    assert calls.log == [("create_network", (flags,))]


def test_workspace_on_8_2_is_the_attribute():
    calls = fake.Calls()
    trt, _, config = fake.surface("8.2.1.8", calls)
    assert trt_compat.set_workspace(config, trt, 512 << 20) == "max_workspace_size"
    assert config.max_workspace_size == 512 << 20
    assert calls.log == []


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.4.0.106"])
def test_workspace_from_8_4_is_a_memory_pool_limit(version):
    calls = fake.Calls()
    trt, _, config = fake.surface(version, calls)
    assert trt_compat.set_workspace(config, trt, 256 << 20) == "set_memory_pool_limit"
    assert calls.log == [("set_memory_pool_limit", ("MemoryPoolType.WORKSPACE", 256 << 20))]


def test_fp16_flag_is_set_where_it_exists_and_the_gpu_is_fast():
    calls = fake.Calls()
    trt, builder, config = fake.surface("8.2.1.8", calls)
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_BUILDER_FLAG
    assert trt_compat.enable_fp16(builder, config, trt) is True
    assert config.flags == ["BuilderFlag.FP16"]


def test_fp16_flag_is_not_set_without_fast_fp16():
    trt, builder, config = fake.surface("8.2.1.8", fast_fp16=False)
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_NOT_FAST
    assert trt_compat.enable_fp16(builder, config, trt) is False
    assert config.flags == []


def test_tensorrt_11_has_no_fp16_flag_and_is_not_asked_for_one():
    trt, builder, config = fake.surface("11.4.0.106")
    assert not hasattr(trt.BuilderFlag, "FP16")
    assert trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_FROM_ONNX_TYPES
    assert trt_compat.enable_fp16(builder, config, trt) is False
    assert config.flags == []


@pytest.mark.parametrize("version, flag", [("8.0.1", "STRICT_TYPES"),
                                           ("8.2.1.8", "OBEY_PRECISION_CONSTRAINTS"),
                                           ("10.3.0", "OBEY_PRECISION_CONSTRAINTS"),
                                           ("11.4.0.106", None)])
def test_precision_constraint_flag_by_feature(version, flag):
    assert trt_compat.precision_constraint_flag(fake.fake_trt(version)) == flag


def _network():
    return fake.Network([fake.Layer("/a/MatMul", "MATRIX_MULTIPLY"),
                         fake.Layer("/a/Softmax", "SOFTMAX"),
                         fake.Layer("/b/Conv", "CONVOLUTION"),
                         fake.Layer("/a/Shape", "SHAPE", ("DataType.INT32",))])


def test_pinning_sets_layer_precision_output_types_and_the_obey_flag():
    trt, _, config = fake.surface("8.2.1.8")
    network = _network()
    assert trt_compat.pin_layers_fp32(network, config, trt, ["/a/MatMul", "/a/Softmax"]) == [
        "/a/MatMul", "/a/Softmax"]
    matmul, softmax, conv, _ = network.layers
    assert matmul.precision == softmax.precision == "DataType.FLOAT"
    assert matmul.output_types == {0: "DataType.FLOAT"}
    assert conv.precision is None and conv.output_types == {}
    assert config.flags == ["BuilderFlag.OBEY_PRECISION_CONSTRAINTS"]


def test_pinning_is_a_no_op_on_strongly_typed_tensorrt_11():
    trt, _, config = fake.surface("11.4.0.106")
    network = _network()
    assert trt_compat.pin_layers_fp32(network, config, trt, ["/a/MatMul"]) == []
    assert network.layers[0].precision is None and config.flags == []


def test_network_layers_report_type_names_and_shape_tensors():
    layers = trt_compat.network_layers(_network(), fake.fake_trt("8.2.1.8"))
    assert [(l.name, l.type, l.float_outputs) for l in layers] == [
        ("/a/MatMul", "MATRIX_MULTIPLY", True), ("/a/Softmax", "SOFTMAX", True),
        ("/b/Conv", "CONVOLUTION", True), ("/a/Shape", "SHAPE", False)]


def test_parser_errors_on_8_2_name_the_node_index():
    parser = fake.Parser([fake.ParserError82("Unsupported ONNX opset 17", 3, 1),
                          fake.ParserError82("Resize scales must be an initializer", 12, 1)])
    lines = trt_compat.parser_errors(parser)
    assert len(lines) == 2
    assert lines[0].startswith("node 3: Unsupported ONNX opset 17")
    assert "node 12" in lines[1] and "ErrorCode.UNSUPPORTED_NODE" in lines[1]


def test_parser_errors_on_10_add_node_name_and_operator():
    parser = fake.Parser([fake.ParserError10("no importer", 7, 1, "/stem/Mod", "Mod")])
    assert trt_compat.parser_errors(parser) == [
        "node 7 /stem/Mod Mod: no importer (code ErrorCode.UNSUPPORTED_NODE)"]


def test_timing_cache_rejected_by_tensorrt_is_replaced_with_a_fresh_one():
    calls = fake.Calls()
    config = fake.Config82(calls, accept_cache=False)
    assert trt_compat.attach_timing_cache(config, b"from another gpu") is False
    assert [args[0] for name, args in calls.log if name == "set_timing_cache"] == [
        ("cache", b"from another gpu"), ("cache", b"")]
    calls.log[:] = []
    assert trt_compat.attach_timing_cache(fake.Config82(calls), b"ok") is True


def test_int8_is_refused_on_a_gpu_without_fast_int8_like_the_nano():
    trt, builder, _ = fake.surface("8.2.1.8", fast_int8=False)
    possible, reason = trt_compat.int8_support(builder, trt)
    assert not possible and "Jetson Nano" in reason


def test_int8_is_refused_on_tensorrt_11_which_has_no_calibrators():
    trt, builder, _ = fake.surface("11.4.0.106")
    possible, reason = trt_compat.int8_support(builder, trt)
    assert not possible and "no INT8 calibrators" in reason


def test_int8_is_possible_on_10_with_fast_int8():
    trt, builder, _ = fake.surface("10.3.0")
    assert trt_compat.int8_support(builder, trt) == (True, "")


def test_io_and_execution_on_8_2_use_the_bindings_api():
    calls = fake.Calls()
    trt = fake.fake_trt("8.2.1.8")
    engine, context = fake.Engine82(calls), fake.Context82(calls)
    tensors = trt_compat.io_tensors(engine, trt)
    assert [(t.name, t.is_input, t.shape, t.dtype.name, t.index) for t in tensors] == [
        ("images", True, (-1, 3, 64, 64), "float32", 0), ("embeddings", False, (-1, 96),
                                                          "float32", 1)]
    assert trt_compat.profile_shapes(engine, tensors[0])[2] == (8, 3, 64, 64)
    assert trt_compat.set_input_shape(context, tensors[0], (2, 3, 64, 64))
    assert trt_compat.context_shape(context, tensors[1]) == (2, 96)
    assert trt_compat.execute(context, list(reversed(tensors)), [2000, 1000], 77)
    assert calls.log == [("get_profile_shape", (0, 0)),
                         ("set_binding_shape", (0, (2, 3, 64, 64))),
                         ("execute_async_v2", ([1000, 2000], 77))]


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0.106"])
def test_io_and_execution_from_10_use_the_tensor_api(version):
    calls = fake.Calls()
    trt = fake.fake_trt(version)
    engine, context = fake.EngineTensorApi(calls, trt), fake.ContextTensorApi(calls)
    tensors = trt_compat.io_tensors(engine, trt)
    assert [(t.name, t.is_input) for t in tensors] == [("images", True), ("embeddings", False)]
    assert trt_compat.profile_shapes(engine, tensors[0])[0] == (1, 3, 64, 64)
    assert trt_compat.set_input_shape(context, tensors[0], (2, 3, 64, 64))
    assert trt_compat.execute(context, tensors, [1000, 2000], 77)
    assert calls.log == [("get_tensor_profile_shape", ("images", 0)),
                         ("set_input_shape", ("images", (2, 3, 64, 64))),
                         ("set_tensor_address", ("images", 1000)),
                         ("set_tensor_address", ("embeddings", 2000)),
                         ("execute_async_v3", (77,))]


def test_tensor_api_is_preferred_where_both_exist_on_8_5():
    calls = fake.Calls()
    trt = fake.fake_trt("8.5.2")
    engine = fake.Engine85(calls, trt)
    assert trt_compat.uses_tensor_api(engine)
    tensors = trt_compat.io_tensors(engine, trt)
    trt_compat.profile_shapes(engine, tensors[0])
    assert calls.names() == ["get_tensor_profile_shape"]


def test_rejected_input_shape_is_reported():
    context = fake.Context82(fake.Calls(), accept=False)
    tensor = trt_compat.io_tensors(fake.Engine82(fake.Calls()), fake.fake_trt("8.2.1.8"))[0]
    assert trt_compat.set_input_shape(context, tensor, (64, 3, 64, 64)) is False
