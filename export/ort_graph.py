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

logger = logging.getLogger(__name__)

#: What ``--optimize-for`` offers: ``any`` leaves the graph as exported (every runtime reads it
#: well), ``onnxruntime`` rewrites the channel reductions for ONNX Runtime's CPU provider.
TARGETS = ("any", "onnxruntime")


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _channels(model: onnx.ModelProto) -> Dict[str, int]:
    """Tensor name -> its channel count (axis 1), where known: from shape inference, and for a
    ``Conv``'s output from its weight (the exporter's graphs defeat shape inference past their
    first dynamic reshape, and every channel reduction of CVNet reads a convolution)."""
    weights = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights:
            found[node.output[0]] = int(weights[node.input[1]][0])
    inferred = shape_inference.infer_shapes(model)
    values = (list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output))
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
            found[value.name] = int(dims[1].dim_value)
    return found


def _is_channel_reduction(node: onnx.NodeProto, op_type: str) -> bool:
    """``op_type`` over axis 1 only, keeping the axis (opset 13: axes as an attribute)."""
    return (node.op_type == op_type and node.domain in ("", "ai.onnx") and len(node.input) == 1
            and list(_attribute(node, "axes", []) or []) == [1]
            and _attribute(node, "keepdims", 1) == 1)


def _mean_as_conv(node: onnx.NodeProto, channels: int) -> Tuple[List[onnx.NodeProto],
                                                                  List[onnx.TensorProto]]:
    weight = numpy_helper.from_array(np.full((1, channels, 1, 1), 1.0 / channels, np.float32),
                                     node.name + "/mean_weight")
    conv = helper.make_node("Conv", [node.input[0], weight.name], [node.output[0]],
                            name=node.name + "/as_conv", kernel_shape=[1, 1])
    return [conv], [weight]


def _max_as_tree(node: onnx.NodeProto, channels: int) -> Tuple[List[onnx.NodeProto],
                                                                List[onnx.TensorProto]]:
    nodes, weights, leftovers = [], [], []
    current, width, level = node.input[0], channels, 0
    while width > 1:
        half = width // 2
        sizes = [half, half] + ([1] if width % 2 else [])
        split = numpy_helper.from_array(np.array(sizes, np.int64),
                                        "{}/split{}".format(node.name, level))
        parts = ["{}/half{}_{}".format(node.name, level, i) for i in range(len(sizes))]
        nodes.append(helper.make_node("Split", [current, split.name], parts, axis=1,
                                      name="{}/split{}".format(node.name, level)))
        weights.append(split)
        leftovers += parts[2:]
        current = "{}/max{}".format(node.name, level)
        nodes.append(helper.make_node("Max", parts[:2], [current],
                                      name="{}/max{}".format(node.name, level)))
        width, level = half, level + 1
    inputs = [current] + leftovers
    if len(inputs) == 1:
        nodes.append(helper.make_node("Identity", inputs, [node.output[0]],
                                      name=node.name + "/max"))
    else:
        nodes.append(helper.make_node("Max", inputs, [node.output[0]], name=node.name + "/max"))
    return nodes, weights


def optimize_for_onnxruntime(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, Dict[str, int]]:
    """The channel reductions of ``model`` in the forms ONNX Runtime runs fast (module docstring).

    Args:
        model: An exported graph (opset 13, float32 tensors).

    Returns:
        The rewritten copy, checked with ``onnx.checker``, and the count of each rewrite:
        ``{"channel_mean": n, "channel_max": m}``. Reductions whose channel count shape
        inference cannot tell are left alone.
    """
    channels = _channels(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rewritten = []  # type: List[onnx.NodeProto]
    counts = {"channel_mean": 0, "channel_max": 0}
    for node in graph.node:
        count = channels.get(node.input[0]) if node.input else None  # type: Optional[int]
        if count is not None and _is_channel_reduction(node, "ReduceMean"):
            nodes, weights = _mean_as_conv(node, count)
            counts["channel_mean"] += 1
        elif count is not None and _is_channel_reduction(node, "ReduceMax"):
            nodes, weights = _max_as_tree(node, count)
            counts["channel_max"] += 1
        else:
            rewritten.append(node)
            continue
        rewritten += nodes
        graph.initializer.extend(weights)
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.checker.check_model(out)
    logger.info("graph for ONNX Runtime: %d channel means as 1x1 convolutions, %d channel maxima "
                "as halving trees", counts["channel_mean"], counts["channel_max"])
    return out, counts
