"""Which ONNX operators each TensorRT version's ONNX parser accepts (torch-free, Python 3.6).

The lists live in ``cvnet/core/tensorrt_onnx_ops.json``, transcribed from ONNX-TensorRT's
``docs/operators.md`` of each release (the file records its sources). The exporter checks every
node of a graph against the list of the TensorRT version it targets, so an operator the Jetson
Nano's TensorRT 8.2 cannot parse fails the export on the host, naming the node, instead of
failing the engine build on the device.

Example:
    >>> support = operator_support("8.2")
    >>> unsupported_nodes([("attn/MatMul", "MatMul"), ("x", "Einsum")], support)
    [('x', 'Einsum')]
"""

import json
import os
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from cvnet.core.errors import ConfigError, UnsupportedOperatorError

#: The operator lists, shipped next to this module (package data of both installs).
DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensorrt_onnx_ops.json")

#: The TensorRT version of JetPack 4.6.x, the newest a Jetson Nano runs.
JETSON_NANO_TENSORRT = "8.2"
#: First TensorRT release whose network inputs may be UINT8 (TensorRT 8.5.1 release notes;
#: NVIDIA/TensorRT#1503). Older parsers fail with "Unsupported ONNX data type: UINT8 (2)".
UINT8_INPUT_MIN_TENSORRT = "8.5"


class OperatorSupport(NamedTuple):
    """The ONNX operators one TensorRT version's parser accepts.

    Attributes:
        version: TensorRT version the list belongs to, e.g. ``"8.2"``.
        max_opset: Highest ONNX opset the parser of that version reads.
        supported: Operator types (ONNX spelling, e.g. ``"ReduceMean"``) the parser accepts.
        restrictions: Operator type -> the documented restriction, where one is listed.
        source: Where the list was transcribed from.
    """

    version: str
    max_opset: int
    supported: FrozenSet[str]
    restrictions: Dict[str, str]
    source: str


def version_tuple(version: str) -> Tuple[int, ...]:
    """``"8.2.1.8"`` -> ``(8, 2, 1, 8)``: compare these, never the version strings."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ConfigError("TensorRT version {!r} is not a version number; expected e.g. '8.2' or "
                          "'10.3.0'".format(version))
    return tuple(parts)


def _load_table(path: str = DATA_PATH) -> Dict[str, dict]:
    with open(path, "r") as handle:
        return json.load(handle)["versions"]


def known_versions(path: str = DATA_PATH) -> List[str]:
    """Returns the TensorRT versions that have an operator list, oldest first."""
    return sorted(_load_table(path), key=version_tuple)


def operator_support(version: str = JETSON_NANO_TENSORRT, path: str = DATA_PATH) -> OperatorSupport:
    """Returns the operator list for a TensorRT version.

    A version without its own list uses the newest listed version not newer than it (TensorRT
    only adds operators between releases), so ``"8.2.1.8"`` uses ``"8.2"`` and ``"8.4"`` uses
    ``"8.2"`` too.

    Args:
        version: TensorRT version string, e.g. ``"8.2"``, ``"8.2.1.8"`` or ``"10.3.0"``.
        path: The JSON table; the one shipped with cvnet by default.

    Raises:
        ConfigError: The version is older than every listed one, or not a version number.
    """
    table = _load_table(path)
    wanted = version_tuple(version)
    candidates = [v for v in table if version_tuple(v) <= wanted]
    if not candidates:
        raise ConfigError("no ONNX operator list for TensorRT {} (lists exist for {}); pick one of "
                          "those versions".format(version, ", ".join(known_versions(path))))
    best = max(candidates, key=version_tuple)
    entry = table[best]
    return OperatorSupport(
        version=best,
        max_opset=int(entry["max_opset"]),
        supported=frozenset(entry["supported"]),
        restrictions=dict(entry.get("restrictions", {})),
        source=entry.get("source", ""),
    )


def supports_uint8_input(version: str) -> bool:
    """Whether TensorRT ``version`` accepts a uint8 network input (8.5 and newer)."""
    return version_tuple(version) >= version_tuple(UINT8_INPUT_MIN_TENSORRT)


def versions_reading_opset(opset: int, path: str = DATA_PATH) -> List[str]:
    """The listed TensorRT versions whose ONNX parser reads ``opset``, oldest first."""
    table = _load_table(path)
    return [v for v in known_versions(path) if int(table[v]["max_opset"]) >= opset]


def unsupported_nodes(nodes: Iterable[Tuple[str, str]],
                      support: OperatorSupport) -> List[Tuple[str, str]]:
    """Returns the ``(node name, op type)`` pairs whose op type ``support`` lacks, in input order."""
    return [(name, op_type) for name, op_type in nodes if op_type not in support.supported]


def check_nodes(nodes: Sequence[Tuple[str, str]], support: OperatorSupport,
                opset: Optional[int] = None) -> None:
    """Raises if a graph cannot be parsed by the TensorRT version ``support`` describes.

    Args:
        nodes: ``(node name, op type)`` for every node of the graph.
        support: The target version's list, from :func:`operator_support`.
        opset: The graph's default-domain opset, checked against the version's maximum.

    Raises:
        UnsupportedOperatorError: Naming every offending node (or the opset) and the fix.
    """
    problems = []
    if opset is not None and opset > support.max_opset:
        problems.append("opset {} is newer than TensorRT {} reads (at most {}); export with "
                        "--opset {}".format(opset, support.version, support.max_opset,
                                            support.max_opset))
    bad = unsupported_nodes(nodes, support)
    if bad:
        shown = ", ".join("{} ({})".format(name or "<unnamed>", op) for name, op in bad[:20])
        more = " and {} more".format(len(bad) - 20) if len(bad) > 20 else ""
        problems.append("{} node(s) use operators TensorRT {}'s ONNX parser does not support: "
                        "{}{}; change the model so these layers export as supported operators "
                        "(list: {})".format(len(bad), support.version, shown, more, support.source))
    if problems:
        raise UnsupportedOperatorError("; ".join(problems))
