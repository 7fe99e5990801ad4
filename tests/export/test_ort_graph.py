"""The graph for ONNX Runtime: channel reductions on channels-last rows, broadcasts spread into
equal shapes, spatial means as GlobalAveragePool give the unrewritten graph's results (max abs
difference on random inputs), ONNX Runtime keeps more of the rewritten graph in NCHWc, and the
export with --optimize-for onnxruntime still parses in TensorRT 8.2 and passes its parity
check."""

import os
import sys
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from cvnet.core.artifact import read_sidecar  # noqa: E402
from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.export.cli import main  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.ort_graph import REWRITES, optimize_for_onnxruntime  # noqa: E402
from cvnet.export.pipeline import ExportOptions, export_model  # noqa: E402
from cvnet.models import build_model  # noqa: E402


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _reductions(channels):
    """A graph of a channel mean and a channel max over (N, C, 5, 7) convolution outputs."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [channels, channels, 1, 1],
                                np.eye(channels, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMean", ["c"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("ReduceMax", ["c"], ["max"], axes=[1], keepdims=1),
             helper.make_node("ReduceMean", ["c"], ["spatial"], axes=[2, 3], keepdims=1)]
    graph = helper.make_graph(
        nodes, "reductions", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["n", channels, 5, 7])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in
         (("mean", ["n", 1, 5, 7]), ("max", ["n", 1, 5, 7]), ("spatial", ["n", channels, 1, 1]))],
        [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


#: What cvnet_tiny's graph gets: 6 collaborations x 2 branches (mean, max, weighted sum), the
#: two gates whose width is a multiple of 16, 15 spatial means (the gates', the stem's), and the
#: stem's pool moved before its attention scale and its concatenation after the pool.
TINY_COUNTS = {"channel_mean": 12, "channel_max": 12, "map_broadcast": 12, "channel_scale": 2,
               "spatial_mean": 15, "pool_first": 1, "concat_last": 1}


def _counts(**found):
    counts = dict.fromkeys(REWRITES, 0)
    counts.update(found)
    return counts


@pytest.mark.parametrize("channels", [1, 2, 5, 7, 64, 256])
def test_the_rewritten_reductions_equal_the_original(channels):
    original = _reductions(channels)
    rewritten, counts = optimize_for_onnxruntime(original)
    assert counts == _counts(channel_mean=1, channel_max=1, spatial_mean=1)
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops.count("Transpose") == 1  # one channels-last copy for the mean and the max
    assert "GlobalAveragePool" in ops
    rng = np.random.RandomState(channels)
    for batch in (1, 3):
        x = (rng.randn(batch, channels, 5, 7) * 10).astype(np.float32)
        before, after = _session(original).run(None, {"x": x}), _session(rewritten).run(
            None, {"x": x})
        np.testing.assert_array_equal(after[1], before[1])  # a maximum is exact in any order
        scale = np.abs(x).max()
        assert np.abs(after[0] - before[0]).max() <= 4e-7 * scale  # the same sum
        assert np.abs(after[2] - before[2]).max() <= 4e-7 * scale  # a sum in another order


def _broadcasts(channels):
    """A 1-channel map and a (N, C, 1, 1) scale, each multiplied into (N, C, 6, 4) conv outputs."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [channels, channels, 1, 1],
                                np.eye(channels, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMax", ["c"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Sigmoid", ["m"], ["map"]),
             helper.make_node("Mul", ["map", "c"], ["mapped"]),
             helper.make_node("ReduceMean", ["c"], ["s"], axes=[2, 3], keepdims=1),
             helper.make_node("Sigmoid", ["s"], ["scale"]),
             helper.make_node("Mul", ["c", "scale"], ["scaled"])]
    return _graph(nodes, [_info("x", ["n", channels, 6, 4])],
                  [_info("mapped", ["n", channels, 6, 4]), _info("scaled", ["n", channels, 6, 4])],
                  [weight])


@pytest.mark.parametrize("channels", [16, 48])
def test_broadcast_multiplications_spread_exactly(channels):
    """The map spread over C channels by a 1x1 convolution of weight 1, the scale over H x W by
    nearest upsampling: the products are bit-identical."""
    original = _broadcasts(channels)
    rewritten, counts = optimize_for_onnxruntime(original)
    assert counts == _counts(channel_max=1, map_broadcast=1, channel_scale=1, spatial_mean=1)
    x = np.random.RandomState(channels).randn(2, channels, 6, 4).astype(np.float32) * 5
    before, after = _session(original).run(None, {"x": x}), _session(rewritten).run(None, {"x": x})
    np.testing.assert_array_equal(after[0], before[0])
    scale = np.abs(x).max()
    assert np.abs(after[1] - before[1]).max() <= 4e-7 * scale  # the spatial mean's sum order


def test_broadcasts_over_channels_nchwc_cannot_take_are_left_alone():
    """5 channels are no multiple of MLAS's NCHWc block: the Muls stay as they are."""
    rewritten, counts = optimize_for_onnxruntime(_broadcasts(5))
    assert counts["map_broadcast"] == counts["channel_scale"] == 0
    assert [n.op_type for n in rewritten.graph.node].count("Mul") == 2


def _stem(scale_op):
    """The MSL stem's pattern: three branches concatenated, scaled per channel by
    ``scale_op`` of their spatial maximum, max-pooled 3x3 / 2 with padding."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b", "x"], ["z"], axis=1),
             helper.make_node("GlobalMaxPool", ["z"], ["m"]),  # a GAP would round differently
             helper.make_node(scale_op, ["m"], ["s"]),
             helper.make_node("Mul", ["z", "s"], ["scaled"]),
             helper.make_node("MaxPool", ["scaled"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1])]
    return _graph(nodes, [_info("x", ["n", 16, 9, 9])], [_info("y", ["n", 48, 5, 5])])


def test_the_stem_pools_before_scaling_and_concatenates_after_pooling_bit_identically():
    original = _stem("Sigmoid")
    rewritten, counts = optimize_for_onnxruntime(original)
    assert counts["pool_first"] == 1 and counts["concat_last"] == 1
    ops = [(node.op_type, list(node.input)) for node in rewritten.graph.node]
    assert ("Concat", ["a", "b", "x"]) not in ops  # no concatenation at full size any more
    assert sum(op == "MaxPool" for op, _ in ops) == 3
    x = np.random.RandomState(4).randn(3, 16, 9, 9).astype(np.float32) * 4
    before, after = _session(original).run(None, {"x": x}), _session(rewritten).run(None, {"x": x})
    np.testing.assert_array_equal(after[0], before[0])


def test_a_scale_that_may_be_negative_keeps_the_pool_after_it():
    """max(z * s) is s * max(z) only for s >= 0: a Tanh scale is left as it is."""
    rewritten, counts = optimize_for_onnxruntime(_stem("Tanh"))
    assert counts["pool_first"] == 0
    assert counts["concat_last"] == 0  # the concatenation still feeds the Mul
    x = np.random.RandomState(5).randn(2, 16, 9, 9).astype(np.float32)
    before = _session(_stem("Tanh")).run(None, {"x": x})[0]
    np.testing.assert_array_equal(_session(rewritten).run(None, {"x": x})[0], before)


def _reorders(model):
    """ReorderOutput nodes (NCHWc -> NCHW) in the graph ONNX Runtime optimises ``model`` into."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    return sum(node.op_type == "ReorderOutput" for node in optimized.graph.node)


def test_onnx_runtime_keeps_the_rewritten_cvnet_in_nchwc():
    """What the rewrite is for: ONNX Runtime's NCHWc transformer converts fewer tensors back
    to NCHW (the collaboration's weighted sum, the gates), counted in its optimised graph.
    cvnet_small's branches are 16-48 channels wide, multiples of the NCHWc block like the
    paper's (cvnet_tiny's 8 and 12 are not); on this project's Zen 4, 73 -> 40."""
    torch.manual_seed(0)
    graph = onnx_from_module(build_model("cvnet_small").eval(), input_shape=(2, 3, 64, 64))
    before = _reorders(graph)
    if before == 0:
        pytest.skip("ONNX Runtime uses no NCHWc kernels on this CPU: nothing to keep")
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts["map_broadcast"] == 12 and counts["channel_scale"] == 15
    after = _reorders(rewritten)
    assert after < 0.7 * before, (before, after)


def test_missing_sympy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.tools.symbolic_shape_infer", None)
    with pytest.raises(ConfigError, match="pip install sympy"):
        optimize_for_onnxruntime(_reductions(4))


def test_the_cvnet_graph_rewritten_gives_the_same_embeddings():
    torch.manual_seed(0)
    model = build_model("cvnet_tiny").eval()
    graph = onnx_from_module(model, input_shape=(2, 3, 64, 64))
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts == TINY_COUNTS
    x = np.random.RandomState(0).randn(4, 3, 64, 64).astype(np.float32)
    before = _session(graph).run(None, {"images": x})[0]
    after = _session(rewritten).run(None, {"images": x})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert np.abs(after - before).max() <= 1e-6 * np.abs(before).max()
    assert np.abs(after - reference).max() <= 1e-5 * np.abs(reference).max()


def test_export_optimized_for_onnxruntime_is_verified_and_recorded(tmp_path):
    out = str(tmp_path / "tiny.onnx")
    assert main(["--random-init", "--arch", "cvnet_tiny", "--input-size", "32",
                 "--verify-images", "4", "--optimize-for", "onnxruntime", "-o", out]) == 0
    meta = read_sidecar(out)
    assert meta.extra["optimized_for"] == {"runtime": "onnxruntime",
                                           "rewrites": TINY_COUNTS}
    assert meta.verification["cases"][0]["cosine_min"] > 0.9999  # the rewritten graph, checked
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert "GlobalAveragePool" in ops and "ReduceMax" in ops  # the attention's row max too
    with pytest.raises(ConfigError, match="rewrites FP32 graphs"):
        export_model(None, ExportOptions(output=str(tmp_path / "h.onnx"), arch="cvnet_tiny",
                                         random_init=True, half=True,
                                         optimize_for="onnxruntime", verify=False))


def _tiny_at(opset):
    torch.manual_seed(0)
    model = build_model("cvnet_tiny").eval()
    return model, onnx_from_module(model, input_shape=(2, 3, 64, 64), opset=opset,
                                   trt_version="10.0")


@pytest.mark.parametrize("opset", [11, 12, 18])
def test_cvnet_graphs_of_other_opsets_are_rewritten_and_load(opset):
    """Below 13 Resize needs its roi input; from 18 the reductions take their axes as an input
    (and ONNX Runtime's symbolic shape inference gives up, ONNX's own is used): every opset is
    rewritten alike, and ONNX Runtime loads and runs the result."""
    model, graph = _tiny_at(opset)
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts == TINY_COUNTS
    x = np.random.RandomState(0).randn(2, 3, 64, 64).astype(np.float32)
    before = _session(graph).run(None, {"images": x})[0]
    after = _session(rewritten).run(None, {"images": x})[0]
    assert np.abs(after - before).max() <= 1e-6 * np.abs(before).max()


def _graph(nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_opset_18_axes_inputs_negative_axes_and_empty_axes(caplog):
    """Axes from a constant input, normalised by rank (-3 of a 4-D tensor is 1); empty axes with
    noop_with_empty_axes is no reduction; a graph with nothing to rewrite is warned about."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-3])
    empty = helper.make_tensor("none", TensorProto.INT64, [0], [])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=1),
             helper.make_node("ReduceMax", ["x", "axes"], ["max"], keepdims=1),
             helper.make_node("ReduceMax", ["x", "none"], ["same"], keepdims=1,
                              noop_with_empty_axes=1)]
    graph = _graph(nodes, [_info("x", ["n", 6, 3, 3])],
                   [_info("mean", ["n", 1, 3, 3]), _info("max", ["n", 1, 3, 3]),
                    _info("same", ["n", 6, 3, 3])], [axes, empty], opset=18)
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts == _counts(channel_mean=1, channel_max=1)
    x = np.random.RandomState(1).randn(2, 6, 3, 3).astype(np.float32)
    before, after = _session(graph).run(None, {"x": x}), _session(rewritten).run(None, {"x": x})
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[2], x)
    nothing = _graph([helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0)],
                     [_info("x", ["n", 6, 3, 3])], [_info("m", ["n", 6])])
    assert optimize_for_onnxruntime(nothing)[1] == _counts()
    assert "nothing was rewritten" in caplog.text


def test_a_conv1d_channel_reduction_is_left_alone(caplog):
    """A rank-3 (N, C, L) tensor: a (1, C, 1, 1) Conv weight would not load in ONNX Runtime."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 1],
                                np.eye(4, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMean", ["c"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("ReduceMax", ["c"], ["max"], axes=[1], keepdims=1)]
    graph = _graph(nodes, [_info("x", ["n", 4, 9])],
                   [_info("mean", ["n", 1, 9]), _info("max", ["n", 1, 9])], [weight])
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts == _counts()
    assert "3-D input" in caplog.text
    x = np.random.RandomState(2).randn(2, 4, 9).astype(np.float32)
    _session(rewritten).run(None, {"x": x})  # loads and runs


def test_unnamed_nodes_get_distinct_names():
    """Two unnamed reductions: names come from their outputs, so nothing clashes."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [5, 5, 1, 1],
                                np.eye(5, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMax", ["c"], ["a"], axes=[1], keepdims=1),
             helper.make_node("ReduceMax", ["c"], ["b"], axes=[1], keepdims=1),
             helper.make_node("ReduceMean", ["c"], ["m1"], axes=[1], keepdims=1),
             helper.make_node("ReduceMean", ["c"], ["m2"], axes=[1], keepdims=1)]
    graph = _graph(nodes, [_info("x", ["n", 5, 2, 2])],
                   [_info(n, ["n", 1, 2, 2]) for n in ("a", "b", "m1", "m2")], [weight])
    rewritten, counts = optimize_for_onnxruntime(graph)
    assert counts == _counts(channel_mean=2, channel_max=2)
    names = [node.name for node in rewritten.graph.node if node.name]
    assert len(names) == len(set(names))
    x = np.random.RandomState(3).randn(1, 5, 2, 2).astype(np.float32)
    before, after = _session(graph).run(None, {"x": x}), _session(rewritten).run(None, {"x": x})
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
