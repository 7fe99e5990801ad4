"""cvnet-match: exact chunked top-k against brute force, known answers, refusals, pictures."""

import csv
import os

import cv2
import numpy as np
import pytest

from cvnet.core.metrics import cosine_distance
from cvnet.core.synth import sample_images
from cvnet.jetson import store_index
from cvnet.jetson.cli import main
from cvnet.jetson.match import match
from cvnet.jetson.store import Store, StoreError
from cvnet.jetson.topk import normalize_rows, topk_exact
from tests.jetson.stores import make_store

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.path.join(ROOT, "tests", "fixtures", "tiny", "cvnet_tiny.onnx")


def _topk(queries, folder, k, block_rows=4096):
    with Store(folder) as store:
        return topk_exact(normalize_rows(queries.astype(np.float32)), store, k, block_rows)


def test_blockwise_topk_equals_brute_force(tmp_path):
    rng = np.random.RandomState(0)
    queries = rng.randn(13, 16).astype(np.float32)
    gallery = rng.randn(50, 16).astype(np.float32)
    folder = make_store(str(tmp_path / "g"), gallery)
    indices, sims = _topk(queries, folder, 5, block_rows=3)
    order = np.argsort(cosine_distance(queries, gallery), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(sims, 1 - np.take_along_axis(
        cosine_distance(queries, gallery), order, axis=1), atol=1e-5)
    # An exact tie (identical rows, in different blocks): the lower gallery row ranks first.
    tied = gallery.copy()
    tied[20] = tied[3]
    indices, _ = _topk(tied[3:4], make_store(str(tmp_path / "t"), tied, chunk=64), 2, 8)
    assert indices.tolist() == [[3, 20]]
    # k beyond the gallery: -1 and -inf past its end.
    indices, sims = _topk(queries[:2], folder, 60)
    assert (indices[:, 50:] == -1).all() and np.isneginf(sims[:, 50:]).all()


def test_match_resolves_only_the_winners_rows(tmp_path, monkeypatch):
    """The gallery's index rows are looked up for the winners only, never read whole."""
    rng = np.random.RandomState(5)
    make_store(str(tmp_path / "g"), rng.randn(2000, 8).astype(np.float32), chunk=256, view="G")
    make_store(str(tmp_path / "q"), rng.randn(4, 8).astype(np.float32), view="A", failed=False)
    built = []
    real = store_index._row
    monkeypatch.setattr(store_index, "_row", lambda values: built.append(values) or real(values))
    result = match(str(tmp_path / "q"), str(tmp_path / "g"), topk=3, backend="exact",
                   block_rows=100)
    winners = set(result.indices[result.indices >= 0].tolist())
    assert set(result.gallery_rows) == winners and len(built) == 4 + len(winners)
    assert {row.view for row in result.gallery_rows.values()} == {"G"}
    assert [row.view for row in result.query_rows] == ["A"] * 4
    assert result.gallery_meta["model_hash"] == "a" * 64 and result.backend == "exact"


def test_a_postprocess_hook_sees_scores_rows_and_views(tmp_path):
    rng = np.random.RandomState(6)
    make_store(str(tmp_path / "g"), rng.randn(30, 8).astype(np.float32), view="G")
    make_store(str(tmp_path / "q"), rng.randn(3, 8).astype(np.float32), view="A")
    seen = []

    def keep_first(matches):
        seen.append((matches.query_rows[0].view,
                     matches.gallery_rows[int(matches.indices[0, 0])].view))
        indices = matches.indices.copy()
        indices[:, 1:] = -1
        return matches._replace(indices=indices)

    result = match(str(tmp_path / "q"), str(tmp_path / "g"), topk=4, postprocess=keep_first)
    assert seen == [("A", "G")] and (result.indices[:, 1:] == -1).all()


def test_threshold_and_model_hash(tmp_path):
    rng = np.random.RandomState(1)
    gallery = rng.randn(20, 8).astype(np.float16)
    make_store(str(tmp_path / "g"), gallery)
    make_store(str(tmp_path / "q"), gallery[:4])
    result = match(str(tmp_path / "q"), str(tmp_path / "g"), topk=3, threshold=0.999)
    assert result.indices[:, 0].tolist() == [0, 1, 2, 3]
    assert (result.indices[:, 1:] == -1).all()
    assert [row.path for row in result.query_rows] == ["0.png", "1.png", "2.png", "3.png"]
    make_store(str(tmp_path / "other"), gallery[:4], model_hash="b" * 64)
    with pytest.raises(StoreError, match="different models"):
        match(str(tmp_path / "other"), str(tmp_path / "g"))
    assert match(str(tmp_path / "other"), str(tmp_path / "g"), force=True).indices[0, 0] == 0
    make_store(str(tmp_path / "wide"), rng.randn(3, 9).astype(np.float32))
    with pytest.raises(StoreError, match="9-d"):
        match(str(tmp_path / "wide"), str(tmp_path / "g"), force=True)


SAME_MODEL = {"weights_sha256": "c" * 64, "variant": "cvnet", "input_size": [64, 64]}


@pytest.mark.parametrize("query, gallery, reason", [
    ({"input_size": [64, 64]}, {"input_size": [256, 256]},
     "embedded at 64x64 pixels and the gallery at 256x256"),
    ({"weights_sha256": "d" * 64}, {}, "different weights (weights_sha256 dddddddddddd..."),
    ({"variant": "cvnet_tiny"}, {}, "different architectures, cvnet_tiny and cvnet"),
    ({}, {"dim": 9}, "query embeddings are 8-d, gallery embeddings 9-d"),
], ids=["input-size", "weights", "architecture", "length"])
def test_incomparable_folders_are_refused_with_no_force_offer(tmp_path, caplog, query, gallery,
                                                             reason):
    rng = np.random.RandomState(3)
    folders = []
    for name, changes in (("q", query), ("g", gallery)):
        dim = changes.pop("dim", 8)
        folders.append(make_store(str(tmp_path / name), rng.randn(5, dim).astype(np.float32),
                                  model_hash=name * 64, **dict(SAME_MODEL, **changes)))
    for force in (False, True):
        with pytest.raises(StoreError) as caught:
            match(*folders, force=force)
        message = str(caught.value)
        assert reason in message and "cannot be compared" in message
        assert "--force" not in message  # nothing to force: the vectors are incomparable
    assert main(["match", "--query", folders[0], "--gallery", folders[1], "--force"]) == 1
    assert reason in caplog.text


def test_harmless_differences_match_and_an_unproven_model_needs_force(tmp_path):
    rng = np.random.RandomState(4)
    gallery = rng.randn(6, 8).astype(np.float32)
    make_store(str(tmp_path / "g"), gallery, model_hash="plan" * 16, engine="cvnet.plan",
               normalized=True, **SAME_MODEL)
    # Same weights, other engine file, float16, not normalised: cosine does not care.
    make_store(str(tmp_path / "q"), gallery[:2].astype(np.float16), model_hash="onnx" * 16,
               engine="cvnet.onnx", normalized=False, **SAME_MODEL)
    assert match(str(tmp_path / "q"), str(tmp_path / "g"), topk=1).indices[:, 0].tolist() == [0, 1]
    # A .plan without its sidecar is known only by its file's hash: maybe the same model.
    make_store(str(tmp_path / "bare"), gallery[:2], model_hash="bare" * 16, engine="cvnet.plan",
               input_size=[64, 64])
    with pytest.raises(StoreError, match=r"may come from different models.*pass --force"):
        match(str(tmp_path / "bare"), str(tmp_path / "g"))
    assert match(str(tmp_path / "bare"), str(tmp_path / "g"), force=True).indices[0, 0] == 0


def test_embed_then_match_known_answers(tmp_path):
    """Queries are re-encoded (JPEG) copies of gallery crops: each must find its original."""
    images = sample_images(24, seed=7, size=64)
    gallery_dir, query_dir = tmp_path / "gallery", tmp_path / "query"
    gallery_dir.mkdir()
    query_dir.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(gallery_dir / "g{:02d}.png".format(i)), image)
    answers = {}
    for i in (2, 5, 11, 17, 23):
        name = "q{:02d}.jpg".format(i)
        cv2.imwrite(str(query_dir / name), images[i], [cv2.IMWRITE_JPEG_QUALITY, 95])
        answers[name] = "g{:02d}.png".format(i)
    for name, source in (("q", query_dir), ("g", gallery_dir)):
        assert main(["embed", "--engine", ENGINE, "--images", str(source), "-o",
                     str(tmp_path / name), "--chunk-size", "5"]) == 0
    csv_path = str(tmp_path / "matches.csv")
    pictures = str(tmp_path / "pictures")
    args = ["match", "--query", str(tmp_path / "q"), "--gallery", str(tmp_path / "g"),
            "--topk", "3", "-o", csv_path, "--visualize", pictures]
    assert main(args) == 0
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    top1 = {row["query"]: row["gallery"] for row in rows if row["rank"] == "1"}
    assert top1 == answers
    assert len(rows) == 15
    names = sorted(os.listdir(pictures))
    assert len(names) == 5 and all(name.endswith(".png") for name in names)
    picture = cv2.imread(os.path.join(pictures, names[0]))
    assert picture is not None and picture.shape[1] > 3 * picture.shape[0]


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_a_topk_past_the_gallery_sets_aside_nothing_for_empty_places(tmp_path, backend):
    """Review #18-10: --topk was allocated queries x topk before the gallery was looked at."""
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.RandomState(5)
    gallery = normalize_rows(rng.randn(9, 8).astype(np.float32))
    make_store(str(tmp_path / "g"), gallery)
    make_store(str(tmp_path / "q"), gallery[:3])
    result = match(str(tmp_path / "q"), str(tmp_path / "g"), topk=10 ** 12, backend=backend)
    assert result.indices.shape == result.similarities.shape == (3, 9)
    assert result.indices[:, 0].tolist() == [0, 1, 2]
    assert sorted(result.indices[0].tolist()) == list(range(9))
