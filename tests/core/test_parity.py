"""Parity figures: cosine, max difference, retrieval agreement, thresholds by precision.

One module for the exporter's and the engine builder's checks (cvnet.core.parity).
"""

import numpy as np
import pytest

from cvnet.core.parity import (BF16_MIN_COSINE, FP16_MIN_COSINE, FP32_MIN_COSINE, MIN_COSINE,
                               MIN_TOP5_AGREEMENT, find_runtime_check, keeps_rankings,
                               parity_figures, passed, record_verdict,
                               record_summary, requirement, retrieval_agreement,
                               runtime_check_record, verification_images)
from cvnet.core.synth import sample_images

pytestmark = pytest.mark.device


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


def test_thresholds_are_defined_once_by_precision():
    assert MIN_COSINE == {"fp32": FP32_MIN_COSINE, "fp16": FP16_MIN_COSINE,
                          "bf16": BF16_MIN_COSINE}
    assert (FP32_MIN_COSINE, FP16_MIN_COSINE, BF16_MIN_COSINE) == (0.9999, 0.999, 0.995)
    emb = np.random.RandomState(1).randn(6, 8)
    close = parity_figures(emb, emb + 0.01)  # cosine min 0.99989: FP16 passes, FP32 not
    assert passed(close, "fp16") is True and passed(close, "fp32") is False
    assert passed(close, "int8") is None  # reported, not judged


def _swapped_neighbours():
    """Embeddings whose cosine to the reference stays high while the rankings change."""
    rng = np.random.RandomState(3)
    common = rng.randn(1, 16) * 50.0
    ref = common + rng.randn(12, 16)  # every row near one direction: tiny differences rank
    cand = common + rng.randn(12, 16)  # the same size of noise, other neighbours
    return parity_figures(ref, cand)


def test_bf16_is_judged_on_the_rankings_too():
    assert MIN_TOP5_AGREEMENT == {"bf16": 0.99}
    shuffled = _swapped_neighbours()
    assert shuffled.cosine_min > BF16_MIN_COSINE and shuffled.top5_agreement < 0.99
    assert passed(shuffled, "bf16") is False  # a high cosine does not save changed rankings
    emb = np.random.RandomState(1).randn(20, 8)
    assert passed(parity_figures(emb, emb * (1 + 1e-4)), "bf16") is True
    assert requirement("bf16") == "cosine >= 0.995, top-5 agreement >= 0.99"
    assert requirement("int8") == "none (reported, not judged)"


def test_runtime_check_records_travel_in_the_verification_object():
    failed = runtime_check_record("openvino", "bf16", [_swapped_neighbours()._replace(batch=8)],
                                  reference="PyTorch FP32", backend_version="2026.4.1",
                                  device="CPU test")
    emb = np.random.RandomState(1).randn(20, 8)
    good = runtime_check_record("openvino", "fp32", [parity_figures(emb, emb, batch=1)],
                                reference="PyTorch FP32", backend_version="2026.4.1",
                                device="CPU test")
    assert failed["passed"] is False and good["passed"] is True
    verification = {"passed": True, "runtime_checks": [good, failed]}
    assert find_runtime_check(verification, "openvino", "bf16") is failed
    assert find_runtime_check(verification, "openvino", "fp16") is None
    assert find_runtime_check(None, "openvino", "bf16") is None
    assert "top-5 agreement" in record_summary(failed) and "CPU test" in record_summary(failed)


def test_a_record_is_judged_again_from_its_figures():
    """The stored ``passed`` is not trusted: the figures decide, with today's thresholds; a
    record without figures proves nothing; every precision but fp32 must keep the rankings."""
    emb = np.random.RandomState(1).randn(20, 8)
    good = runtime_check_record("openvino", "fp16", [parity_figures(emb, emb, batch=1)],
                                reference="PyTorch FP32", backend_version="2026.4.1",
                                device="CPU test")
    assert good["passed"] is True and record_verdict(good) is True
    forged = dict(runtime_check_record("openvino", "fp16", [_swapped_neighbours()],
                                       reference="r", backend_version="v", device="d"),
                  passed=True)
    assert record_verdict(forged) is False  # fp16's cosine passes, its rankings do not
    empty = runtime_check_record("openvino", "bf16", [], reference="r", backend_version="v",
                                 device="d")
    assert empty["passed"] is False and record_verdict(empty) is None
    assert record_verdict(dict(good, cases=[{"cosine_min": 1.0}])) is None  # damaged
    assert keeps_rankings(_swapped_neighbours(), "fp32") is False
    assert keeps_rankings(parity_figures(emb, emb), "fp32") is True
    assert keeps_rankings(parity_figures(emb, emb), "int8") is False
    assert requirement("fp16", rankings=True) == "cosine >= 0.999, top-5 agreement >= 0.99"
