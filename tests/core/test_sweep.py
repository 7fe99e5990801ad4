"""Degradation sweeps: each degradation on its own, and a sweep on the synthetic set whose
accuracy falls monotonically at the small end."""

import cv2
import numpy as np
import pytest

from cvnet.core.datasets import load_dataset
from cvnet.core.degrade import degradation, downscale, jpeg, motion_blur, motion_kernel
from cvnet.core.errors import ConfigError
from cvnet.core.evaluation import evaluate
from cvnet.core.synth import generate_dataset, sample_images
from cvnet.core.sweep import format_sweep, parse_kinds, run_sweep, smallest_side
from tests.core.features import colour_embedder

pytestmark = pytest.mark.device


def test_downscale_sets_the_shorter_side_and_keeps_small_crops():
    image = np.zeros((120, 60, 3), np.uint8)
    assert downscale(image, 16).shape == (32, 16, 3)
    assert downscale(image, 60) is image and downscale(image, 256) is image


def test_motion_blur_is_a_normalised_line_and_repeatable():
    kernel = motion_kernel(9, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and (kernel[4] > 0).sum() == 9
    assert kernel[np.arange(9) != 4].sum() == pytest.approx(0.0, abs=1e-6)
    image = sample_images(1, seed=0, size=64)[0]
    assert motion_blur(image, 1, 30.0) is image
    flat = np.full((32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(motion_blur(flat, 15, 33.0), flat)  # no energy gained or lost
    blur = degradation("blur", 15, seed=4)
    np.testing.assert_array_equal(blur(image, "a.jpg"), blur(image, "a.jpg"))
    other = degradation("blur", 15, seed=5)(image, "a.jpg")
    assert not np.array_equal(blur(image, "a.jpg"), other)  # the seed draws another angle
    edges = [cv2.Laplacian(cv2.cvtColor(motion_blur(image, length, 0.0), cv2.COLOR_BGR2GRAY),
                           cv2.CV_64F).var() for length in (1, 5, 15)]
    assert edges[0] > edges[1] > edges[2]


def test_jpeg_round_trip_loses_more_at_lower_quality():
    image = sample_images(1, seed=1, size=64)[0]
    errors = [np.abs(jpeg(image, q).astype(int) - image).mean() for q in (95, 50, 5)]
    assert errors[0] < errors[1] < errors[2] and jpeg(image, 50).shape == image.shape


def test_refusals():
    for kind, level in (("scale", 0), ("blur", 0), ("jpeg", 101), ("fog", 3)):
        with pytest.raises(ConfigError):
            degradation(kind, level)
    assert parse_kinds("jpeg, scale") == ["scale", "jpeg"]
    with pytest.raises(ConfigError, match="unknown sweep 'fog'"):
        parse_kinds("scale,fog")


def test_smallest_side_needs_every_larger_side_to_hold():
    rows = [{"kind": "scale", "protocol": "A2G", "level": side, "rank1": rank1}
            for side, rank1 in ((64, 0.5), (32, 0.46), (24, 0.44), (16, 0.47), (8, 0.2))]
    assert smallest_side(rows, "A2G", 0.5) == 32  # 24 falls below 0.45; 16 recovering is luck
    assert smallest_side(rows, "A2G", 0.9) is None  # even 64 px is below 90% of 0.9


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """30 test identities x 4 images per view, 64x64 (a few seconds to render)."""
    folder = str(tmp_path_factory.mktemp("sweep"))
    return load_dataset(generate_dataset(folder, ids=60, images_per_view=4, size=64, seed=0))


def test_sweep_on_the_synthetic_set_degrades_monotonically_at_the_small_end(synthetic):
    protocols = ["A2G", "G2A"]
    clean = evaluate(colour_embedder, synthetic, protocols)
    calls = []

    def counted(images):
        calls.append(len(images))
        return colour_embedder(images)

    levels = {"scale": (64, 32, 24, 16, 12, 8), "jpeg": (50, 5)}
    result = run_sweep(counted, synthetic, protocols, clean.embedded, ["scale", "jpeg"],
                       levels=levels, batch_size=1000)
    # The clean embeddings are reused: each level embeds the 240 queries once, nothing else.
    assert calls == [240] * 8
    for protocol in protocols:
        assert result["clean"][protocol]["mAP"] == pytest.approx(
            clean.metrics[protocol]["mAP"])
        rows = {r["level"]: r for r in result["rows"]
                if r["kind"] == "scale" and r["protocol"] == protocol}
        assert rows[64]["mAP"] == pytest.approx(clean.metrics[protocol]["mAP"])  # unchanged
        small_end = [rows[side]["mAP"] for side in (32, 24, 16, 12, 8)]
        assert all(a > b for a, b in zip(small_end, small_end[1:])), small_end
        assert rows[8]["rank1"] < 0.8 * result["clean"][protocol]["rank1"]
        side = result["min_side"][protocol]
        assert side in levels["scale"]
        assert all(rows[s]["rank1"] >= 0.9 * result["clean"][protocol]["rank1"]
                   for s in levels["scale"] if s >= side)
    again = run_sweep(colour_embedder, synthetic, protocols, clean.embedded, ["jpeg"],
                      levels=levels, seed=0)
    assert again["rows"] == [r for r in result["rows"] if r["kind"] == "jpeg"]  # repeatable
    table = format_sweep(result)
    assert "| scale (shorter side, px) | 8 |" in table and "| jpeg (JPEG quality) | 5 |" in table
    assert "Smallest crop side with Rank-1 within 90% of clean" in table
