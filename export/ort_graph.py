"""An ONNX graph ONNX Runtime's CPU provider runs well: CVNet's activations kept in NCHWc.

ONNX Runtime (1.32) runs every convolution of CVNet in its blocked NCHWc layout (MLAS kernels,
near the CPU's peak on this project's Zen 4) and converts a tensor back to plain NCHW for every
operator its NCHWc transformer cannot take. As exported, the paper's CVNet hands it three such
patterns in every DFC module: channel reductions (the collaboration's merge pooling, slow at
batch 1 as well), a 1-channel map broadcast over C channels (the collaboration's weighted sum),
and a (N, C, 1, 1) scale broadcast over H x W (the gates, the stem's attention). Rewritten into
forms that stay in NCHWc, or that ride on a reorder ONNX Runtime does anyway, with the same
results (docs/cpu.md, measured in docs/results.md):

- **channel mean / max** ``ReduceMean|ReduceMax(x, axes=[1], keepdims=1)`` on a 4-D tensor ->
  ``Transpose(x, perm=[0, 2, 3, 1])`` (which ONNX Runtime turns into one channels-last reorder of
  the NCHWc tensor, shared by the mean and the max of one tensor), ``Reshape`` to rows of C,
  the same reduction over the contiguous last axis, ``Reshape`` to (N, 1, H, W). The max is
  bit-identical; the mean is the same sum of the same numbers (equal on every input tried).
- **1-channel map times C channels** ``Mul(m, x)``, m (N, 1, H, W), x (N, C, H, W) ->
  ``Mul(Conv(m, ones(C, 1, 1, 1)), x)``: the map spread over C channels by a 1x1 convolution
  with weight 1 (``1 * m + 0`` is exactly m), then a multiplication of equal shapes, which
  NCHWc takes.
- **channel scale** ``Mul(s, x)``, s (N, C, 1, 1) -> ``Mul(Resize(s, nearest, scales=[1, 1, H,
  W]), x)``: the scale copied over H x W by NCHWc's nearest upsampling, exact.
- **spatial mean** ``ReduceMean(x, axes=[2, 3], keepdims=1)`` -> ``GlobalAveragePool(x)``, which
  NCHWc takes (a sum in another order: about 1e-7 of the input's scale).
- **pool first** ``MaxPool(Mul(z, sigmoid_scale))`` -> ``Mul(MaxPool(z), sigmoid_scale)``, and
  **concatenation last**: a channel ``Concat`` feeding only per-channel pools -> the pools on
  each part, then the ``Concat``. Both bit-identical; the stem's attention and concatenation
  then work on its pooled 64 x 64 maps, not on 128 x 128.

The shapes come from ONNX Runtime's symbolic shape inference
(``onnxruntime.tools.symbolic_shape_infer``, needs sympy), whose results stay in the graph as
``value_info``: without them ONNX Runtime cannot prove two operands of a ``Mul`` have the same
shape after CVNet's attention reshape, and falls back to NCHW. Every other node is left as it
is; the weights and the PyTorch model are untouched. The export's parity check then verifies the
rewritten graph against PyTorch, as always. Host-side (needs onnx and onnxruntime).
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from cvnet.core.errors import ConfigError
from cvnet.export.onnx_export import graph_opset

logger = logging.getLogger(__name__)

#: What ``--optimize-for`` offers: ``any`` leaves the graph as exported (every runtime reads it
#: well), ``onnxruntime`` rewrites it for ONNX Runtime's CPU provider (module docstring).
TARGETS = ("any", "onnxruntime")
#: The rewrites, in the order of the counts ``optimize_for_onnxruntime`` returns, and their
#: words in its log line.
REWRITES = {"channel_mean": "channel means", "channel_max": "channel maxima",
            "map_broadcast": "map broadcasts", "channel_scale": "channel scales",
            "spatial_mean": "spatial means", "pool_first": "pools before a sigmoid scale",
            "concat_last": "concatenations after per-channel pooling"}
#: Operators that work on each channel alone: a channel concatenation commutes with them.
PER_CHANNEL = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
#: Channel counts ONNX Runtime's NCHWc kernels take: multiples of MLAS's block (16 on AVX-512,
#: 8 on AVX2 and NEON). Broadcasts over other counts are left alone: NCHWc would not take them.
NCHWC_BLOCK = 16

Dim = Union[int, str, None]
Shape = Tuple[Dim, ...]


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def infer_shapes(model: onnx.ModelProto, *, warn: bool = True) -> onnx.ModelProto:
    """``model`` with the tensors' shapes in ``value_info``, the batch as a symbol.

    ONNX's own inference stops at the first ``Reshape`` whose target is computed (CVNet's
    attention); ONNX Runtime's symbolic inference carries the symbols through it. Where that
    fails (it cannot read the axes input of opset 18's reductions), ONNX's own inference is
    used with a warning: fewer shapes are known, so fewer nodes are rewritten.

    Raises:
        ConfigError: sympy (which the symbolic inference needs) is missing.
    """
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError as err:
        raise ConfigError(f"--optimize-for onnxruntime needs ONNX Runtime's symbolic shape "
                          f"inference, which needs sympy ({err}); pip install sympy") from None
    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as err:  # noqa: BLE001 -- the tool raises anything; ONNX's is the fallback
        log = logger.warning if warn else logger.debug
        log("graph for ONNX Runtime: ONNX Runtime's symbolic shape inference failed (%s: %s); "
            "using ONNX's own, which stops at computed reshapes: fewer nodes are rewritten",
            type(err).__name__, err)
        return shape_inference.infer_shapes(model, data_prop=True)


def _shapes(model: onnx.ModelProto) -> Dict[str, Shape]:
    """Tensor name -> its dims (int, symbol, or None where unknown)."""
    found = {}  # type: Dict[str, Shape]
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for value in values:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            found[value.name] = tuple(
                dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
                for dim in tensor.shape.dim)
    for tensor in model.graph.initializer:
        found[tensor.name] = tuple(tensor.dims)
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

    Axes are an attribute up to opset 17 and an optional input from opset 18; without axes
    every axis is reduced, or none with ``noop_with_empty_axes=1``."""
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in constants:
            return None
        axes = [int(a) for a in np.asarray(constants[node.input[1]]).ravel()]
    else:
        axes = list(_attribute(node, "axes", []) or [])
    if not axes:
        return None if _attribute(node, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted({a + rank if a < 0 else a for a in axes})


def _known(*dims: Dim) -> bool:
    return all(isinstance(dim, int) and dim > 0 for dim in dims)


def _spatial_mean(node: onnx.NodeProto, shapes: Dict[str, Shape],
                  constants: Dict[str, np.ndarray]) -> Optional[onnx.NodeProto]:
    """``GlobalAveragePool`` for a ``ReduceMean`` over axes 2, 3 (keepdims) of a 4-D tensor."""
    shape = shapes.get(node.input[0]) if node.input else None
    if (node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or shape is None
            or len(shape) != 4 or _attribute(node, "keepdims", 1) != 1
            or _reduced_axes(node, 4, constants) != [2, 3]):
        return None
    return helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]],
                            name=node.output[0] + "/ort/global_pool")


def _restructure(model: onnx.ModelProto,
                 shapes: Dict[str, Shape]) -> Tuple[onnx.ModelProto, Dict[str, int]]:
    """The rewrites that move nodes: spatial means, pools before a sigmoid scale, channel
    concatenations after per-channel pooling (module docstring), in that order, each exact."""
    counts = {name: 0 for name in REWRITES}
    constants = _constants(model)
    nodes = []  # type: List[onnx.NodeProto]
    for node in model.graph.node:
        pooled = _spatial_mean(node, shapes, constants)
        counts["spatial_mean"] += pooled is not None
        nodes.append(pooled or node)
    counts["pool_first"] = _pool_first(nodes, shapes)
    outputs = {value.name for value in model.graph.output}
    nodes, counts["concat_last"] = _concat_last(nodes, outputs)
    return _with_nodes(model, nodes), counts


def _with_nodes(model: onnx.ModelProto, nodes: Sequence[onnx.NodeProto],
                initializers: Sequence[onnx.TensorProto] = ()) -> onnx.ModelProto:
    """A copy of ``model`` whose graph holds ``nodes`` and, added, ``initializers``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(initializers)
    return out


def _consumers(nodes: Sequence[onnx.NodeProto]) -> Dict[str, List[onnx.NodeProto]]:
    found = {}  # type: Dict[str, List[onnx.NodeProto]]
    for node in nodes:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _pool_first(nodes: List[onnx.NodeProto], shapes: Dict[str, Shape]) -> int:
    """``MaxPool(Mul(z, s))`` -> ``Mul(MaxPool(z), s)`` in place, where s is a (N, C, 1, 1)
    ``Sigmoid`` output and the product feeds only the pool: bit-identical, because a product with
    s >= 0 rounds monotonically, so the maximum commutes with it (padding is skipped by the pool
    either way). The stem's attention scales 128 x 128 maps that its pool then quarters."""
    producers = {name: node for node in nodes for name in node.output}
    consumers = _consumers(nodes)
    moved = 0
    for pool in list(nodes):
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        mul = producers.get(pool.input[0])
        if mul is None or mul.op_type != "Mul" or len(consumers[mul.output[0]]) != 1:
            continue
        for data, scale in (tuple(mul.input), tuple(mul.input)[::-1]):
            source = producers.get(scale)
            shape = shapes.get(scale)
            if source is None or source.op_type != "Sigmoid" or shape is None \
                    or len(shape) != 4 or shape[2:] != (1, 1):
                continue
            pooled, result = pool.output[0] + "/ort/pooled", pool.output[0]
            pool.input[0], pool.output[0] = data, pooled
            del mul.input[:]
            mul.input.extend([pooled, scale])
            mul.output[0] = result
            nodes.remove(mul)
            nodes.insert(nodes.index(pool) + 1, mul)
            moved += 1
            break
    return moved


def _concat_last(nodes: List[onnx.NodeProto],
                 outputs: Sequence[str]) -> Tuple[List[onnx.NodeProto], int]:
    """A channel ``Concat`` whose every consumer is a per-channel pool (:data:`PER_CHANNEL`):
    each pool runs on each part, and the results are concatenated, bit-identical. The stem
    concatenates three 128 x 128 branches; this concatenates them pooled to 64 x 64."""
    consumers = _consumers(nodes)
    replaced = {}  # type: Dict[int, List[onnx.NodeProto]]  # id(consumer) -> its nodes
    dropped = set()
    for concat in nodes:
        users = consumers.get(concat.output[0], []) if concat.op_type == "Concat" else []
        if (not users or _attribute(concat, "axis") not in (1, -3)
                or concat.output[0] in outputs
                or any(user.op_type not in PER_CHANNEL or len(user.output) != 1
                       or list(user.input) != [concat.output[0]] for user in users)):
            continue
        for user in users:
            parts = []
            for k, name in enumerate(concat.input):
                part = onnx.NodeProto()
                part.CopyFrom(user)
                part.name = "{}/ort/part{}".format(user.output[0], k)
                part.input[0], part.output[0] = name, part.name
                parts.append(part)
            parts.append(helper.make_node("Concat", [part.output[0] for part in parts],
                                          [user.output[0]], axis=1,
                                          name=user.output[0] + "/ort/concat"))
            replaced[id(user)] = parts
        dropped.add(id(concat))
    rewritten = []  # type: List[onnx.NodeProto]
    for node in nodes:
        if id(node) not in dropped:
            rewritten.extend(replaced.get(id(node), [node]))
    return rewritten, len(dropped)


class _Rewriter:
    """Walks the graph once, replacing each node that matches a rewrite (module docstring)."""

    def __init__(self, model: onnx.ModelProto):
        self.shapes, self.constants = _shapes(model), _constants(model)
        self.opset = graph_opset(model)
        self.nodes = []  # type: List[onnx.NodeProto]
        self.initializers = []  # type: List[onnx.TensorProto]
        self.counts = {name: 0 for name in REWRITES}
        self.skipped = []  # type: List[str]
        self.rows = {}  # type: Dict[str, str]  # tensor -> its channels-last rows (N*H*W, C)

    def visit(self, node: onnx.NodeProto) -> None:
        standard = node.domain in ("", "ai.onnx")
        if standard and node.op_type in ("ReduceMean", "ReduceMax") and self._reduction(node):
            return
        if standard and node.op_type == "Mul" and len(node.input) == 2 and self._mul(node):
            return
        self.nodes.append(node)

    def _constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def _reduce(self, op: str, data: str, axis: int, output: str, name: str) -> onnx.NodeProto:
        """``op`` over one axis, keepdims: axes an attribute below opset 18, an input from 18."""
        if self.opset < 18:
            return helper.make_node(op, [data], [output], axes=[axis], keepdims=1, name=name)
        axes = self._constant(name + "/axes", np.array([axis], np.int64))
        return helper.make_node(op, [data, axes], [output], keepdims=1, name=name)

    def _reduction(self, node: onnx.NodeProto) -> bool:
        shape = self.shapes.get(node.input[0])
        if shape is None or _attribute(node, "keepdims", 1) != 1:
            return False
        axes = _reduced_axes(node, len(shape), self.constants)
        if axes != [1]:
            return False
        if len(shape) != 4 or not _known(*shape[1:]):  # a Conv1d's (N, C, L), or unknown dims
            self.skipped.append("{} ({}-D input {})".format(node.name or node.output[0],
                                                             len(shape), list(shape)))
            return False
        channels, height, width = shape[1:]
        source = node.input[0]
        if source not in self.rows:  # one channels-last copy per tensor, for its mean and max
            prefix = source + "/ort"
            last = prefix + "/channels_last"
            self.nodes.append(helper.make_node("Transpose", [source], [last], perm=[0, 2, 3, 1],
                                               name=last))
            rows = prefix + "/rows"
            shape_rows = self._constant(rows + "/shape", np.array([-1, channels], np.int64))
            self.nodes.append(helper.make_node("Reshape", [last, shape_rows], [rows], name=rows))
            self.rows[source] = rows
        prefix = node.output[0] + "/ort"  # output names are unique; node names may not be
        reduced = prefix + "/reduced"
        self.nodes.append(self._reduce(node.op_type, self.rows[source], 1, reduced, reduced))
        back = self._constant(prefix + "/shape", np.array([-1, 1, height, width], np.int64))
        self.nodes.append(helper.make_node("Reshape", [reduced, back], [node.output[0]],
                                           name=prefix + "/map"))
        self.counts["channel_mean" if node.op_type == "ReduceMean" else "channel_max"] += 1
        return True

    def _mul(self, node: onnx.NodeProto) -> bool:
        pair = tuple(node.input)
        for small, big in (pair, pair[::-1]):
            a, b = self.shapes.get(small), self.shapes.get(big)
            if a is None or b is None or len(a) != 4 or len(b) != 4 or a[0] != b[0]:
                continue
            channels = b[1]
            if not _known(channels) or channels % NCHWC_BLOCK:
                continue
            prefix = node.output[0] + "/ort"
            if a[1] == 1 and a[2:] == b[2:] and channels > 1:  # a map over every channel
                ones = self._constant(prefix + "/ones", np.ones((channels, 1, 1, 1), np.float32))
                spread = prefix + "/map_spread"
                self.nodes.append(helper.make_node("Conv", [small, ones], [spread],
                                                   kernel_shape=[1, 1], name=spread))
                self.counts["map_broadcast"] += 1
            elif a[1] == channels and a[2:] == (1, 1) and _known(*b[2:]) and b[2] * b[3] > 1:
                spread = prefix + "/scale_spread"
                # roi is required below opset 13 (and read only by tf_crop_and_resize)
                roi = self._constant(prefix + "/roi", np.zeros(0, np.float32)) \
                    if self.opset < 13 else ""
                scales = self._constant(prefix + "/scales",
                                        np.array([1, 1, b[2], b[3]], np.float32))
                self.nodes.append(helper.make_node(
                    "Resize", [small, roi, scales], [spread], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                    name=spread))
                self.counts["channel_scale"] += 1
            else:
                continue
            self.nodes.append(helper.make_node("Mul", [spread, big], [node.output[0]],
                                               name=prefix + "/mul"))
            return True
        return False


def optimize_for_onnxruntime(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, Dict[str, int]]:
    """``model`` in the forms ONNX Runtime's CPU provider runs well (module docstring).

    Args:
        model: An exported graph (float32 tensors; opset 11 or newer).

    Returns:
        The rewritten copy, checked with ``onnx.checker`` and holding every tensor's shape, and
        the count of each rewrite (the keys of :data:`REWRITES`, in order). Channel reductions
        of a tensor that is not 4-D, or whose dims are unknown, are left alone with a warning;
        a graph where nothing was rewritten is warned about too.

    Raises:
        ConfigError: sympy is missing (:func:`infer_shapes`).
    """
    model, counts = _restructure(model, _shapes(infer_shapes(model)))
    rewriter = _Rewriter(infer_shapes(model, warn=False))
    for node in model.graph.node:
        rewriter.visit(node)
    # the shapes ONNX Runtime's NCHWc transformer needs stay in the graph
    out = infer_shapes(_with_nodes(model, rewriter.nodes, rewriter.initializers), warn=False)
    onnx.checker.check_model(out)
    counts = {name: counts[name] + rewriter.counts[name] for name in REWRITES}
    if rewriter.skipped:
        logger.warning("graph for ONNX Runtime: %d channel reduction(s) left as they are (only "
                       "4-D inputs of known shape are rewritten): %s", len(rewriter.skipped),
                       ", ".join(rewriter.skipped[:5]))
    if not any(counts.values()):
        logger.warning("graph for ONNX Runtime: nothing was rewritten (no channel reduction, "
                       "broadcast multiplication or spatial mean of a known 4-D shape): the "
                       "graph is as exported")
    logger.info("graph for ONNX Runtime: %s", ", ".join(
        "{} {}".format(counts[name], words) for name, words in REWRITES.items()))
    return out, counts
