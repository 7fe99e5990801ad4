"""Export verification: batches, padding, and the parity figures catch a graph of other weights.

The figures themselves (cosine, max difference, retrieval agreement) are tested in
tests/core/test_parity.py.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.parity import FP32_MIN_COSINE, verification_images  # noqa: E402
from cvnet.core.preprocess import PreprocessConfig  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.verify import _run_in_batches, verification_batches, verify_onnx  # noqa: E402
from cvnet.models import build_model  # noqa: E402


def test_batches_and_padding():
    assert verification_batches(static_batch=None, batch_range=(1, 32)) == [1, 8]
    assert verification_batches(static_batch=None, batch_range=(2, 4)) == [2, 4]
    assert verification_batches(static_batch=None, batch_range=(16, 32)) == [16]
    assert verification_batches(static_batch=5, batch_range=(1, 32)) == [5]
    seen = []
    out = _run_in_batches(lambda chunk: seen.append(len(chunk)) or chunk * 2,
                          np.arange(7).reshape(7, 1), 3)
    assert seen == [3, 3, 3] and out.ravel().tolist() == [0, 2, 4, 6, 8, 10, 12]


def test_a_graph_of_other_weights_fails_verification():
    torch.manual_seed(0)
    exported, other = build_model("cvnet_tiny").eval(), build_model("cvnet_tiny").eval()
    graph = onnx_from_module(exported, input_shape=(2, 3, 32, 32)).SerializeToString()
    images = verification_images(6)
    good = verify_onnx(graph, exported, images, config=PreprocessConfig(32, 32), batches=[1, 4])
    bad = verify_onnx(graph, other, images, config=PreprocessConfig(32, 32), batches=[1, 4])
    assert good.passed and [c.batch for c in good.cases] == [1, 4]
    assert good.cases[0].images == 6 and good.input_path.startswith("float path")
    assert not bad.passed and bad.cases[0].cosine_min < FP32_MIN_COSINE == good.min_cosine
    assert "| 4 | 6 |" in good.table() and "batch 1: cosine min" in bad.summary()


def test_checks_of_one_export_run_pytorch_once_per_batch_size():
    torch.manual_seed(0)
    model = build_model("cvnet_tiny").eval()
    graph = onnx_from_module(model, input_shape=(2, 3, 32, 32)).SerializeToString()
    forwards = []
    model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    images, references = verification_images(6), {}
    for _ in range(2):
        report = verify_onnx(graph, model, images, config=PreprocessConfig(32, 32),
                             batches=[1, 4], references=references)
        assert report.passed
    assert sorted(references) == [1, 4] and references[4].shape[0] == 6
    assert forwards == [1] * 6 + [4, 4]  # the second check reused the first one's embeddings
