"""An ONNX graph ONNX Runtime's CPU provider runs well: the channel reductions rewritten.

ONNX Runtime (1.32, one thread) spends about a third of CVNet's batch-1 time in ``ReduceMean``
and ``ReduceMax`` over the channel axis, the collaboration module's merge pooling on (1, 256, 64,
64) and (1, 512, 32, 32) tensors: with a batch of 1 its reduction over the leading kept axis runs
a slow loop. The same numbers come out of forms it runs fast (measured side by side in
docs/results.md):

- **channel mean** ``ReduceMean(x, axes=[1], keepdims=1)`` -> ``Conv(x, W)`` with a fixed
  ``(1, C, 1, 1)`` weight of ``1/C``: the same sum in another order, equal to float32 rounding
  (max abs difference about 1e-7 on unit-scale inputs);
- **channel max** ``ReduceMax(x, axes=[1], keepdims=1)`` -> a halving tree: ``Split`` the
  channels in two halves, ``Max`` them, and again until one channel is left (an odd channel is
  kept aside and joins the last ``Max``): bit-identical, a maximum does not depend on order.

Every other node is left as it is. The trade: at batch 8 ONNX Runtime's own reductions run near
memory speed and the graph gets a few percent slower, OpenVINO runs the tree slower than its own
``ReduceMax``, and TensorRT was not measured on it, so the rewrite is asked for explicitly:
``cvnet-export --optimize-for onnxruntime`` (the export's parity check then verifies the
rewritten graph against PyTorch, as always). Host-side (needs onnx).
"""

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from cvnet.export.onnx_export import graph_opset

logger = logging.getLogger(__name__)

#: What ``--optimize-for`` offers: ``any`` leaves the graph as exported (every runtime reads it
#: well), ``onnxruntime`` rewrites the channel reductions for ONNX Runtime's CPU provider.
TARGETS = ("any", "onnxruntime")


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _shapes(model: onnx.ModelProto) -> Dict[str, Tuple[int, Optional[int]]]:
    """Tensor name -> (rank, channel count at axis 1 or None), where the rank is known: from
    shape inference, and for a ``Conv``'s output from its weight (the exporter's graphs defeat
    shape inference past their first dynamic reshape, and every channel reduction of CVNet reads
    a convolution). A Conv1d's output has rank 3, a Conv2d's rank 4."""
    weights = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    found = {}  # type: Dict[str, Tuple[int, Optional[int]]]
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights:
            dims = weights[node.input[1]]
            found[node.output[0]] = (len(dims), int(dims[0]))
    inferred = shape_inference.infer_shapes(model)
    values = (list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output))
    for value in values:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = tensor.shape.dim
        known = len(dims) > 1 and dims[1].HasField("dim_value") and dims[1].dim_value > 0
        found[value.name] = (len(dims), int(dims[1].dim_value) if known else None)
    return found


def _constants(model: onnx.ModelProto) -> Dict[str, np.ndarray]:
    """Tensor name -> value, for initializers and ``Constant`` nodes' outputs."""
    found = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    for node in model.graph.node:
        value = _attribute(node, "value") if node.op_type == "Constant" else None
        if value is not None:
            found[node.output[0]] = numpy_helper.to_array(value)
    return found


def _reduced_axes(node: onnx.NodeProto, rank: int,
                  constants: Dict[str, np.ndarray]) -> Optional[List[int]]:
    """The axes a ``ReduceMean``/``ReduceMax`` reduces, non-negative; None where they cannot be
    told (axes from a tensor computed at run time) or where it reduces nothing.

    Axes are an attribute up to opset 17 and an optional input from opset 18
    (``ReduceMean``/``ReduceMax``-18); without axes every axis is reduced, or none with
    ``noop_with_empty_axes=1``."""
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in constants:
            return None
        axes = [int(a) for a in np.asarray(constants[node.input[1]]).ravel()]
    else:
        axes = list(_attribute(node, "axes", []) or [])
    if not axes:
        return None if _attribute(node, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted({a + rank if a < 0 else a for a in axes})


def _is_channel_reduction(node: onnx.NodeProto, rank: int,
                          constants: Dict[str, np.ndarray]) -> bool:
    """A ``ReduceMean``/``ReduceMax`` over axis 1 only that keeps the axis."""
    return (node.op_type in ("ReduceMean", "ReduceMax") and node.domain in ("", "ai.onnx")
            and _attribute(node, "keepdims", 1) == 1
            and _reduced_axes(node, rank, constants) == [1])


def _mean_as_conv(node: onnx.NodeProto, channels: int,
                  prefix: str) -> Tuple[List[onnx.NodeProto], List[onnx.TensorProto]]:
    weight = numpy_helper.from_array(np.full((1, channels, 1, 1), 1.0 / channels, np.float32),
                                     prefix + "/mean_weight")
    conv = helper.make_node("Conv", [node.input[0], weight.name], [node.output[0]],
                            name=prefix + "/as_conv", kernel_shape=[1, 1])
    return [conv], [weight]


def _split(current: str, sizes: List[int], parts: List[str], name: str,
           opset: int) -> Tuple[onnx.NodeProto, List[onnx.TensorProto]]:
    """A ``Split`` along axis 1: ``split`` as an input from opset 13, an attribute before."""
    if opset < 13:
        return helper.make_node("Split", [current], parts, axis=1, split=sizes, name=name), []
    split = numpy_helper.from_array(np.array(sizes, np.int64), name)
    return helper.make_node("Split", [current, split.name], parts, axis=1, name=name), [split]


def _max_as_tree(node: onnx.NodeProto, channels: int, prefix: str,
                 opset: int) -> Tuple[List[onnx.NodeProto], List[onnx.TensorProto]]:
    nodes, weights, leftovers = [], [], []
    current, width, level = node.input[0], channels, 0
    while width > 1:
        half = width // 2
        sizes = [half, half] + ([1] if width % 2 else [])
        parts = ["{}/half{}_{}".format(prefix, level, i) for i in range(len(sizes))]
        split, constants = _split(current, sizes, parts, "{}/split{}".format(prefix, level),
                                  opset)
        nodes.append(split)
        weights += constants
        leftovers += parts[2:]
        current = "{}/max{}".format(prefix, level)
        nodes.append(helper.make_node("Max", parts[:2], [current],
                                      name="{}/max{}".format(prefix, level)))
        width, level = half, level + 1
    inputs = [current] + leftovers
    if len(inputs) == 1:
        nodes.append(helper.make_node("Identity", inputs, [node.output[0]],
                                      name=prefix + "/max"))
    else:
        nodes.append(helper.make_node("Max", inputs, [node.output[0]], name=prefix + "/max"))
    return nodes, weights


def optimize_for_onnxruntime(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, Dict[str, int]]:
    """The channel reductions of ``model`` in the forms ONNX Runtime runs fast (module docstring).

    Args:
        model: An exported graph (float32 tensors; any opset from 11: ``Split`` takes its
            sizes as an attribute below 13, reductions their axes as an input from 18).

    Returns:
        The rewritten copy, checked with ``onnx.checker``, and the count of each rewrite:
        ``{"channel_mean": n, "channel_max": m}``. Reductions over axis 1 of a tensor that is
        not 4-D, or whose channel count cannot be told, are left alone with a warning; a graph
        where nothing was rewritten is warned about too.
    """
    shapes, constants, opset = _shapes(model), _constants(model), graph_opset(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rewritten = []  # type: List[onnx.NodeProto]
    counts = {"channel_mean": 0, "channel_max": 0}
    skipped = []  # channel reductions left alone: their channel count or rank is not 4-D
    for node in graph.node:
        rank, count = shapes.get(node.input[0], (None, None)) if node.input else (None, None)
        if rank is None or not _is_channel_reduction(node, rank, constants):
            rewritten.append(node)
            continue
        if rank != 4 or count is None:  # a Conv1d's (N, C, L), or channels unknown
            skipped.append("{} ({}-D input, {} channels)".format(
                node.name or node.output[0], rank, count or "unknown"))
            rewritten.append(node)
            continue
        prefix = "{}/ort".format(node.output[0])  # output names are unique; node names may not be
        if node.op_type == "ReduceMean":
            nodes, weights = _mean_as_conv(node, count, prefix)
            counts["channel_mean"] += 1
        else:
            nodes, weights = _max_as_tree(node, count, prefix, opset)
            counts["channel_max"] += 1
        rewritten += nodes
        graph.initializer.extend(weights)
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.checker.check_model(out)
    if skipped:
        logger.warning("graph for ONNX Runtime: %d channel reduction(s) left as they are (only "
                       "4-D inputs with a known channel count are rewritten): %s", len(skipped),
                       ", ".join(skipped[:5]))
    if not counts["channel_mean"] and not counts["channel_max"]:
        reductions = sum(node.op_type in ("ReduceMean", "ReduceMax") for node in graph.node)
        logger.warning("graph for ONNX Runtime: no channel reduction was rewritten (%d "
                       "ReduceMean/ReduceMax node(s) in the graph): the graph is as exported",
                       reductions)
    logger.info("graph for ONNX Runtime: %d channel means as 1x1 convolutions, %d channel maxima "
                "as halving trees", counts["channel_mean"], counts["channel_max"])
    return out, counts
