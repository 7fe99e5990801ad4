"""The shipped TensorRT operator lists and the node check the exporter relies on."""

import json
import os

import pytest

from cvnet.core.errors import ConfigError, UnsupportedOperatorError
from cvnet.core.tensorrt_ops import (DATA_PATH, check_nodes, known_versions, operator_support,
                                     unsupported_nodes)

pytestmark = pytest.mark.device

# What CVNet's opset-13 graph is made of; TensorRT 8.2 (the Nano's) must parse all of it.
CVNET_OPS = ("Add", "AveragePool", "Concat", "Constant", "Conv", "Flatten", "Identity", "MatMul",
             "MaxPool", "Mul", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid",
             "Slice", "Softmax", "Sub", "Transpose")


def test_table_is_consistent():
    with open(DATA_PATH) as handle:
        versions = json.load(handle)["versions"]
    assert "8.2" in versions
    for version, entry in versions.items():
        overlap = set(entry["supported"]) & set(entry.get("unsupported", []))
        assert not overlap, "TensorRT {} lists {} as both".format(version, sorted(overlap))
        assert entry["source"], "TensorRT {} list has no source".format(version)


def test_nano_tensorrt_supports_every_cvnet_operator():
    support = operator_support("8.2")
    assert support.max_opset == 13
    assert unsupported_nodes([(op, op) for op in CVNET_OPS], support) == []


@pytest.mark.parametrize("requested, expected", [("8.2", "8.2"), ("8.2.1.8", "8.2"),
                                                 ("8.4.3", "8.2")])
def test_version_without_own_list_uses_newest_older_list(requested, expected):
    assert operator_support(requested).version == expected


def test_versions_are_ordered_numerically():
    versions = known_versions()
    as_tuples = [tuple(int(p) for p in v.split(".")) for v in versions]
    assert as_tuples == sorted(as_tuples)


def test_too_old_or_malformed_version_is_refused():
    with pytest.raises(ConfigError, match="no ONNX operator list for TensorRT 7.1"):
        operator_support("7.1")
    with pytest.raises(ConfigError, match="not a version number"):
        operator_support("latest")


def test_check_nodes_names_every_offending_node():
    support = operator_support("8.2")
    nodes = [("conv1", "Conv"), ("mask/nonzero", "NonZero"), ("pool", "AveragePool"),
             ("weird", "NoSuchOp")]
    with pytest.raises(UnsupportedOperatorError) as info:
        check_nodes(nodes, support)
    message = str(info.value)
    assert "mask/nonzero (NonZero)" in message and "weird (NoSuchOp)" in message
    assert "conv1" not in message and "2 node(s)" in message


def test_check_nodes_refuses_newer_opset():
    support = operator_support("8.2")
    with pytest.raises(UnsupportedOperatorError, match="opset 17 is newer than TensorRT 8.2"):
        check_nodes([("conv1", "Conv")], support, opset=17)
    check_nodes([("conv1", "Conv")], support, opset=13)


def test_8_2_list_is_onnx_tensorrt_8_2_ga_table():
    """The Nano's list against onnx-tensorrt's own table for TensorRT 8.2 (branch 8.2-GA)."""
    with open(os.path.join(os.path.dirname(__file__), "data",
                           "onnx-tensorrt-8.2-GA-operators.json")) as handle:
        table = json.load(handle)
    support = operator_support("8.2")
    with open(DATA_PATH) as handle:
        entry = json.load(handle)["versions"]["8.2"]
    assert support.max_opset == table["max_opset"] == 13
    assert sorted(support.supported) == table["supported"] and len(table["supported"]) == 129
    assert sorted(entry["unsupported"]) == table["unsupported"]
    assert sorted(support.restrictions) == table["restricted"]
    assert "8.2-GA" in support.source and table["commit"][:7] in support.source
