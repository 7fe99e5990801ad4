"""onnx_from_module, the one export path: an opset-13 graph that TensorRT 8.2 parses and ONNX
Runtime runs like PyTorch, checked before it leaves memory.

What the files of an export hold, and that a failed export writes nothing, is tested through
the pipeline (tests/export/test_cli.py).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cvnet.core.errors import ConfigError, ExportError, UnsupportedOperatorError  # noqa: E402
from cvnet.core.tensorrt_ops import check_nodes, operator_support  # noqa: E402
from cvnet.export.onnx_export import (check_export_opset, exporter_opsets,  # noqa: E402
                                      onnx_from_module, set_metadata_props)
from cvnet.models import build_model  # noqa: E402

SIZE = (32, 32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("cvnet_tiny").eval()


def _saved(graph, path):
    onnx.save(graph, path)
    return path


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    graph = onnx_from_module(model, input_shape=(2, 3) + SIZE)
    set_metadata_props(graph, {"variant": '"cvnet_tiny"'})
    return _saved(graph, str(tmp_path_factory.mktemp("onnx") / "tiny.onnx"))


def _cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_graph_is_opset_13_ir_7_with_one_dynamic_input_and_output(exported):
    graph = onnx.load(exported)
    onnx.checker.check_model(graph)
    # IR 7 / opset 13 is what the TorchScript exporter writes; dynamo would give IR 10, opset 18.
    assert graph.ir_version == 7
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [13]
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert inp.name == "images" and out.name == "embeddings"
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 32, 32]
    assert out.type.tensor_type.shape.dim[1].dim_value == 96
    assert {p.key: p.value for p in graph.metadata_props} == {"variant": '"cvnet_tiny"'}
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)


def test_every_node_is_parsed_by_tensorrt_8_2(exported):
    graph = onnx.load(exported)
    check_nodes([(n.name, n.op_type) for n in graph.graph.node], operator_support("8.2"), opset=13)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_reproduces_pytorch_embeddings(model, exported, batch):
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    images = torch.randn(batch, 3, *SIZE)
    with torch.no_grad():
        expected = model(images).numpy()
    actual = session.run(None, {"images": images.numpy()})[0]
    assert actual.shape == (batch, 96)
    assert _cosine(expected, actual).min() >= 0.9999


def test_static_batch(model, tmp_path):
    path = _saved(onnx_from_module(model, input_shape=(4, 3) + SIZE, dynamic_batch=False),
                  str(tmp_path / "b4.onnx"))
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4 and not dims[0].dim_param
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((4, 3, 32, 32), np.float32)})[0].shape == (4, 96)
    with pytest.raises(Exception):
        session.run(None, {"images": np.zeros((2, 3, 32, 32), np.float32)})


def test_train_mode_is_refused():
    model = build_model("cvnet_tiny").train()
    with pytest.raises(ExportError, match="training mode.*call model.eval"):
        onnx_from_module(model, input_shape=(2, 3) + SIZE)


def test_opset_must_fit_exporter_and_target_tensorrt(model):
    with pytest.raises(ConfigError, match="newer than TensorRT 8.2.*--trt-version 8.6"):
        onnx_from_module(model, input_shape=(2, 3) + SIZE, opset=17)
    low, high = exporter_opsets()
    with pytest.raises(ConfigError, match=f"installed torch .* writes opsets {low} to {high}"):
        check_export_opset(high + 1, "10.0")
    graph = onnx_from_module(model, input_shape=(2, 3) + SIZE, opset=17, trt_version="8.6")
    assert [o.version for o in graph.opset_import if o.domain == ""] == [17]


class _UsesMod(torch.nn.Module):
    """A model with an operator TensorRT 8.2 lacks (Mod)."""

    def forward(self, x):
        return torch.fmod(x, 3.0).mean(dim=(2, 3))


def test_unsupported_operator_fails_naming_the_node():
    with pytest.raises(UnsupportedOperatorError, match=r"/Mod \(Mod\)") as err:
        onnx_from_module(_UsesMod().eval(), input_shape=(2, 3) + SIZE)
    assert "TensorRT 8.2" in str(err.value)
    onnx_from_module(_UsesMod().eval(), input_shape=(2, 3) + SIZE, trt_version="10.0")
