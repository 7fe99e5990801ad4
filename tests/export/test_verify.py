"""Parity figures: cosine, max difference, retrieval agreement; they catch a bad graph."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.models import build_model  # noqa: E402
from cvnet.core.preprocess import PreprocessConfig  # noqa: E402
from cvnet.core.synth import sample_images  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.verify import (FP32_MIN_COSINE, _run_in_batches, parity_figures,  # noqa: E402
                           retrieval_agreement, verification_batches, verification_images,
                           verify_onnx)


def test_verification_images_mix_synthetic_vehicles_and_generated_images():
    images = verification_images(10, seed=4)
    assert len(images) == 10
    assert all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in images)
    assert all(np.array_equal(a, b) for a, b in zip(images[:5], sample_images(5, seed=4)))
    assert len({i.shape[:2] for i in images[5:]}) > 3  # varied sizes exercise the resize
    assert all(np.array_equal(a, b) for a, b in zip(images, verification_images(10, seed=4)))
    assert not np.array_equal(images[6], verification_images(10, seed=5)[6])


def test_identical_embeddings_agree_fully():
    emb = np.random.RandomState(0).randn(12, 16).astype(np.float32)
    figures = parity_figures(emb, emb.copy(), batch=4)
    assert figures.cosine_min == pytest.approx(1.0) and figures.max_abs_diff == 0.0
    assert figures.top1_agreement == figures.top5_agreement == 1.0
    assert (figures.batch, figures.images) == (4, 12)


def test_retrieval_agreement_counts_changed_neighbours():
    # Points on a line: each one's nearest neighbour is the next one along.
    angles = np.linspace(0, 1.5, 8)
    ref = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    moved = ref.copy()
    moved[0] = ref[7] * 1.001  # query 0 now sits next to 6 and 7
    assert retrieval_agreement(ref, ref, 1) == 1.0
    assert retrieval_agreement(ref, moved, 1) < 1.0
    assert retrieval_agreement(ref[:1], ref[:1], 5) == 1.0  # no gallery: nothing to disagree on


def test_cosine_and_difference_of_a_perturbed_copy():
    ref = np.ones((3, 4), np.float32)
    cand = ref.copy()
    cand[1, 0] = -1.0
    figures = parity_figures(ref, cand, batch=1)
    assert figures.cosine_min == pytest.approx(0.5) and figures.max_abs_diff == 2.0
    with pytest.raises(ValueError, match="shapes differ"):
        parity_figures(ref, cand[:2], batch=1)


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
    good = verify_onnx(graph, exported, images, config=PreprocessConfig(32, 32), batches=[1, 4],
                       min_cosine=FP32_MIN_COSINE)
    bad = verify_onnx(graph, other, images, config=PreprocessConfig(32, 32), batches=[1, 4],
                      min_cosine=FP32_MIN_COSINE)
    assert good.passed and [c.batch for c in good.cases] == [1, 4]
    assert good.cases[0].images == 6 and good.input_path.startswith("float path")
    assert not bad.passed and bad.cases[0].cosine_min < FP32_MIN_COSINE
    assert "| 4 | 6 |" in good.table() and "batch 1: cosine min" in bad.summary()
