"""PyTorch module -> checked ONNX graph, with the TorchScript exporter (``dynamo=False``).

TensorRT 8.2 (the Jetson Nano's) parses opsets up to 13 and the Jetson onnxruntime 1.10 stops at
15; torch 2.13's dynamo exporter emits opset 18 and cannot convert down to 13, so cvnet exports
with the TorchScript exporter at opset 13 by default. Every graph is checked with
``onnx.checker`` and every node against the target TensorRT version's operator list
(:mod:`cvnet.core.tensorrt_ops`), so an operator the device cannot parse fails here, on the host.
"""

import io
import logging
from typing import Dict, Sequence, Tuple

import onnx
import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError, ExportError
from cvnet.core.tensorrt_ops import (JETSON_NANO_TENSORRT, OperatorSupport, check_nodes,
                                     operator_support, versions_reading_opset)
from cvnet.export.defaults import DEFAULT_OPSET

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"


def exporter_opsets() -> Tuple[int, int]:
    """The (lowest, highest) opset the installed torch's TorchScript exporter writes."""
    from torch.onnx import _constants  # private; read by feature detection, with fallbacks

    low = getattr(_constants, "ONNX_MIN_OPSET", 7)
    high = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                   getattr(_constants, "ONNX_MAX_OPSET", 17))
    return int(low), int(high)


def check_export_opset(opset: int, trt_version: str = JETSON_NANO_TENSORRT) -> OperatorSupport:
    """Checks that the exporter can write ``opset`` and TensorRT ``trt_version`` can read it.

    Returns:
        The target version's operator list.

    Raises:
        ConfigError: The installed exporter cannot write ``opset``, or ``opset`` is newer than
            the target TensorRT reads (the message names the ``--trt-version`` that reads it).
    """
    low, high = exporter_opsets()
    if not low <= opset <= high:
        raise ConfigError(f"opset {opset} cannot be produced by the installed torch "
                          f"{torch.__version__} TorchScript exporter (it writes opsets {low} to "
                          f"{high}); pick --opset in that range ({DEFAULT_OPSET} for the Jetson "
                          "Nano's TensorRT 8.2)")
    support = operator_support(trt_version)
    if opset > support.max_opset:
        readers = versions_reading_opset(opset)
        fix = (f"pass --trt-version {readers[0]} (or newer) to target a newer TensorRT"
               if readers else "no listed TensorRT version reads it")
        raise ConfigError(f"opset {opset} is newer than TensorRT {trt_version}'s ONNX parser reads "
                          f"(at most {support.max_opset}); {fix}, or use --opset "
                          f"{support.max_opset} for TensorRT {trt_version}")
    return support


def check_eval_mode(module: nn.Module) -> None:
    """Raises if any submodule is in training mode (BatchNorm would use batch statistics).

    Raises:
        ExportError: Naming the modules in training mode.
    """
    training = [name or "<root>" for name, sub in module.named_modules() if sub.training]
    if training:
        shown = ", ".join(training[:5]) + (" ..." if len(training) > 5 else "")
        raise ExportError(f"{len(training)} module(s) are in training mode ({shown}); call "
                          "model.eval() before exporting")


def graph_opset(graph: onnx.ModelProto) -> int:
    """The default-domain opset of an ONNX model."""
    return next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def onnx_from_module(module: nn.Module, *, input_shape: Sequence[int],
                     input_dtype: torch.dtype = torch.float32, opset: int = DEFAULT_OPSET,
                     dynamic_batch: bool = True, trt_version: str = JETSON_NANO_TENSORRT,
                     input_name: str = INPUT_NAME,
                     output_name: str = OUTPUT_NAME) -> onnx.ModelProto:
    """Exports an eval-mode module with one input and one output, and checks the graph.

    The one export path (:func:`cvnet.export.pipeline.export_model` adds loading, wrapping,
    verification and the sidecar around it): the opset is checked against the exporter and the
    target TensorRT first, the graph with ``onnx.checker`` and every node against the target's
    ONNX operator list after.

    Args:
        module: The module; every submodule must be in eval mode.
        input_shape: Shape of the traced input, e.g. ``(2, 3, 256, 256)``; with
            ``dynamic_batch`` the first axis becomes symbolic (trace with a batch > 1 so that no
            size-1 batch gets baked into reshapes).
        input_dtype: dtype of the input (``torch.uint8`` for in-graph preprocessing).
        opset: Default-domain opset to write.
        dynamic_batch: Make the batch axis of input and output symbolic (``"batch"``).
        trt_version: TensorRT version whose ONNX parser must read the graph (opset, operators).
        input_name: Name of the graph input.
        output_name: Name of the graph output.

    Returns:
        The checked ONNX model, in memory.

    Raises:
        ConfigError: The exporter cannot write ``opset``, or ``trt_version`` cannot read it.
        ExportError: A module is in training mode, the exporter failed, or the graph is invalid.
        UnsupportedOperatorError: A node's operator is not on the target's list (named).
    """
    support = check_export_opset(opset, trt_version)
    check_eval_mode(module)
    if input_dtype == torch.uint8:
        example = torch.randint(0, 256, tuple(input_shape), dtype=torch.uint8)
    else:
        example = torch.rand(tuple(input_shape), dtype=input_dtype)
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=[output_name],
                              dynamic_axes=axes, do_constant_folding=True)
    except (RuntimeError, ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ExportError(f"torch.onnx.export failed at opset {opset}: {first}") from err
    graph = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(graph)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported graph is not valid ONNX: {err}") from err
    outputs = [o.name for o in graph.graph.output]
    if outputs != [output_name]:
        raise ExportError(f"the graph has outputs {outputs}; cvnet exports exactly one, "
                          f"{output_name!r} (the embedding)")
    check_tensorrt_support(graph, support)
    return graph


def check_tensorrt_support(graph: onnx.ModelProto, support: OperatorSupport) -> None:
    """Checks every node and the opset against one TensorRT version's ONNX parser.

    Raises:
        UnsupportedOperatorError: Naming every node whose operator the parser lacks.
    """
    check_nodes([(node.name, node.op_type) for node in graph.graph.node], support,
                opset=graph_opset(graph))


def set_metadata_props(graph: onnx.ModelProto, props: Dict[str, str]) -> None:
    """Replaces the model's ``metadata_props`` with ``props`` (string keys and values)."""
    del graph.metadata_props[:]
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
