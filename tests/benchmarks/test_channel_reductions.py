"""Every form the channel-reduction benchmark times computes what it claims (numpy's channel
mean or max, or the identity convolution's output), in ONNX Runtime."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cvnet.benchmarks.channel_reductions import forms, markdown  # noqa: E402


def test_every_form_computes_its_reduction():
    x = np.random.RandomState(0).randn(2, 16, 4, 4).astype(np.float32)
    truth = {"mean": x.mean(axis=1, keepdims=True), "max": x.max(axis=1, keepdims=True),
             "conv": x}
    found = forms(onnx, (16, 4, 4))
    assert {kind for kind, _ in found.values()} == {"mean", "max", "conv"}
    for name, (kind, graph) in found.items():
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        y = session.run(None, {"images": x})[0]
        assert y.shape == truth[kind].shape, name
        assert np.abs(y - truth[kind]).max() <= 1e-6, name


def test_the_table_puts_forms_down_and_runtimes_across():
    records = [{"shape": (1, 16, 4, 4), "form": f, "kind": "max", "runtime": r, "ms": ms,
                "max_abs_diff": 0.0}
               for f, r, ms in (("a", "onnxruntime", 1.0), ("a", "openvino fp32", 2.0),
                                ("b", "onnxruntime", 3.0), ("b", "openvino fp32", 4.0))]
    table = markdown(records)
    assert "| a | 1.000 | 2.000 | 0.0e+00 |" in table and "| b | 3.000 | 4.000 |" in table
