"""FP16-typed export: FP16 weights, attention and I/O in FP32, embeddings within FP16 tolerance."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from cvnet.core.errors import ExportError  # noqa: E402
from cvnet.core.parity import FP16_MIN_COSINE, verification_images  # noqa: E402
from cvnet.core.preprocess import PreprocessConfig  # noqa: E402
from cvnet.export.half import Float32Island, half_for_export  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.verify import verify_onnx  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.dfc import FilterAttention  # noqa: E402

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def model():
    """cvnet_tiny with active attention (gamma 0 would make every attention op the identity)."""
    torch.manual_seed(0)
    model = build_model("cvnet_tiny").eval()
    for module in model.modules():
        if isinstance(module, FilterAttention):
            module.gamma.data.fill_(0.5)
    return model


def test_copy_is_fp16_except_attention_and_the_original_is_untouched(model):
    half = half_for_export(model)
    islands = [m for m in half.modules() if isinstance(m, Float32Island)]
    assert len(islands) == sum(isinstance(m, FilterAttention) for m in model.modules()) > 0
    for name, param in half.named_parameters():
        inside = any(param is p for island in islands for p in island.parameters())
        assert param.dtype == (torch.float32 if inside else torch.float16), name
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        out = half(torch.randn(2, 3, 32, 32))
    assert out.dtype == torch.float32 and out.shape == (2, 96)


def test_weights_beyond_fp16_range_are_refused(model):
    broken = build_model("cvnet_tiny").eval()
    with torch.no_grad():
        broken.part_conv.weight[0, 0, 0, 0] = 1e6
    with pytest.raises(ExportError, match="exceed FP16's range.*part_conv.weight"):
        half_for_export(broken)


def test_graph_is_fp16_with_fp32_io_and_attention(model):
    graph = onnx_from_module(half_for_export(model), input_shape=(2, 3, 32, 32))
    assert graph.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == FLOAT
    weights = [t for t in graph.graph.initializer if t.data_type in (FLOAT, FLOAT16)
               and np.prod(t.dims) > 1]
    assert sum(t.data_type == FLOAT16 for t in weights) > 0.9 * len(weights)
    inferred = onnx.shape_inference.infer_shapes(graph)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    conv_types = {types.get(n.output[0]) for n in graph.graph.node if n.op_type == "Conv"}
    attention_types = {types.get(n.output[0]) for n in graph.graph.node
                       if n.op_type in ("MatMul", "Softmax") and "filters" in n.name}
    assert conv_types == {FLOAT16}
    assert attention_types == {FLOAT}


def test_fp16_graph_passes_verification_at_fp16_tolerance(model):
    graph = onnx_from_module(half_for_export(model), input_shape=(2, 3, 32, 32))
    report = verify_onnx(graph.SerializeToString(), model, verification_images(8),
                         config=PreprocessConfig(32, 32), batches=[1, 4],
                         precision="fp16")
    assert report.passed, report.summary()
    assert report.min_cosine == FP16_MIN_COSINE  # the threshold comes from the precision
    assert "graph optimisations off" in report.backend
    # FP16 rounding is visible: the graph is not secretly FP32.
    assert max(c.max_abs_diff for c in report.cases) > 1e-5
