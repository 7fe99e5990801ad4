"""In-graph preprocessing: pixels in, the same model input as the shared float path."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from cvnet.core.parity import verification_images  # noqa: E402
from cvnet.core.preprocess import (PreprocessConfig, normalize, preprocess_batch,  # noqa: E402
                                   resize_rgb)
from cvnet.core.tensorrt_ops import check_nodes, operator_support  # noqa: E402
from cvnet.export.graph_preprocess import InGraphPreprocess  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.verify import ort_session  # noqa: E402
from cvnet.models import build_model  # noqa: E402


class _Capture(torch.nn.Module):
    """Returns its input flattened, so the wrapper's output is the model input it built."""

    def forward(self, x):
        return x.flatten(1)


def test_wrapper_builds_exactly_what_preprocess_normalize_builds():
    pixels = np.stack([resize_rgb(image, (32, 48)) for image in verification_images(3)])
    wrapped = InGraphPreprocess(_Capture()).eval()
    with torch.no_grad():
        from_graph = wrapped(torch.from_numpy(pixels)).numpy()
    np.testing.assert_array_equal(from_graph, normalize(pixels).reshape(3, -1))


@pytest.mark.parametrize("dtype, trt_version", [("uint8", "8.6"), ("float32", "8.2")])
def test_exported_graph_takes_nhwc_pixels_and_matches_the_float_path(dtype, trt_version):
    torch.manual_seed(0)
    model = build_model("cvnet_tiny").eval()
    graph = onnx_from_module(InGraphPreprocess(model).eval(), input_shape=(2, 64, 64, 3),
                             input_dtype=getattr(torch, dtype))
    check_nodes([(n.name, n.op_type) for n in graph.graph.node], operator_support(trt_version),
                opset=13)
    (inp,) = graph.graph.input
    assert inp.type.tensor_type.elem_type == onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [64, 64, 3]
    (first,) = [n for n in graph.graph.node if "images" in n.input]
    assert first.op_type == ("Cast" if dtype == "uint8" else "Transpose")  # uint8 only at the input

    images = verification_images(4, seed=3)
    pixels = np.stack([resize_rgb(image, (64, 64)) for image in images]).astype(dtype)
    actual = ort_session(graph.SerializeToString()).run(None, {"images": pixels})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(preprocess_batch(images, PreprocessConfig(64, 64))))
    np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-4, atol=1e-5)
