"""The paper model exports to an opset-13 ONNX graph that TensorRT 8.2 parses and ORT matches."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cvnet.models import build_model  # noqa: E402
from cvnet.tensorrt_ops import check_nodes, operator_support  # noqa: E402


@pytest.fixture(scope="module")
def exported():
    """The paper's CVNet (eval mode) and its ONNX bytes, dynamic batch, opset 13."""
    torch.manual_seed(0)
    model = build_model("cvnet", num_classes=0).eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, 3, 256, 256),), buffer, dynamo=False,
                      opset_version=13, input_names=["images"], output_names=["embeddings"],
                      dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}})
    return model, buffer.getvalue()


def test_graph_is_valid_opset_13_with_one_embedding_output(exported):
    graph = onnx.load_from_string(exported[1])
    onnx.checker.check_model(graph)
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert [o.name for o in graph.graph.output] == ["embeddings"]
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 1024


def test_every_node_is_parsed_by_tensorrt_8_2(exported):
    graph = onnx.load_from_string(exported[1])
    check_nodes([(n.name, n.op_type) for n in graph.graph.node], operator_support("8.2"), opset=13)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_reproduces_pytorch_embeddings(exported, batch):
    model, onnx_bytes = exported
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    images = torch.randn(batch, 3, 256, 256)
    with torch.no_grad():
        expected = model(images).numpy()
    actual = session.run(None, {"images": images.numpy()})[0]
    cosine = (expected * actual).sum(1) / (np.linalg.norm(expected, axis=1)
                                           * np.linalg.norm(actual, axis=1))
    assert actual.shape == (batch, 1024)
    assert cosine.min() >= 0.9999, "per-sample cosine {}".format(cosine)
