"""Thresholds of a .pt checkpoint: recorded in model.pt.json, carried by cvnet-embed (needs torch)."""

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from cvnet.core.fileio import sha256_file  # noqa: E402
from cvnet.core.synth import generate_dataset  # noqa: E402
from cvnet.core.thresholds import CHECKPOINT_SIDECAR_FORMAT, SIDECAR_KEY  # noqa: E402
from cvnet.jetson.cli import main  # noqa: E402
from cvnet.jetson.store import read_meta  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402
from tests.fixtures import tiny_image_paths  # noqa: E402
from tests.fixtures.make_tiny_onnx import fixture_model  # noqa: E402


def test_checkpoint_thresholds_travel_through_its_own_sidecar(tmp_path):
    model = str(tmp_path / "tiny.pt")
    save_checkpoint(model, fixture_model(), arch="cvnet_tiny", model_kwargs={"num_classes": 0})
    data = generate_dataset(str(tmp_path / "synth"), ids=8, images_per_view=2, size=64, seed=1)
    assert main(["eval", model, "--data", data, "--device", "cpu", "--write-thresholds",
                 "--fpr", "0.1", "--bootstrap", "0"]) == 0
    with open(model + ".json") as handle:
        sidecar = json.load(handle)
    assert sidecar["format"] == CHECKPOINT_SIDECAR_FORMAT
    block = sidecar[SIDECAR_KEY]
    assert block["model_hash"] == sha256_file(model)  # a checkpoint is known by its file
    assert block["measured"]["backend"] == "pytorch"
    images = tmp_path / "crops"
    images.mkdir()
    for path in tiny_image_paths()[:3]:
        shutil.copy(path, str(images))
    store = str(tmp_path / "store")
    assert main(["embed", "--engine", model, "--images", str(images), "-o", store,
                 "--view", "G"]) == 0
    meta = read_meta(store)
    assert meta["model_hash"] == block["model_hash"] and meta[SIDECAR_KEY] == block
