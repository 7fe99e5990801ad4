"""Checkpoints: saved atomically, loaded only with weights_only=True, every bad file explained."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import CheckpointError, ConfigError  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import (FORMAT, load_checkpoint, model_from_checkpoint,  # noqa: E402
                                     save_checkpoint, state_dict_mismatch, state_dict_sha256)


@pytest.fixture(scope="module")
def trained():
    """A cvnet_tiny with 5 ID classes and non-default weights, as training leaves it."""
    torch.manual_seed(0)
    model = build_model("cvnet_tiny", num_classes=5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return model.eval()


def _embed(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 64, 64))


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, trained):
    path = str(tmp_path / "best.pt")
    save_checkpoint(path, trained, arch="cvnet_tiny", model_kwargs={"num_classes": 5},
                    epoch=7, metrics={"mAP": 0.5}, config={"lr": 0.065, "widths": [32, 48, 64]})
    assert os.listdir(str(tmp_path)) == ["best.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1 and raw["arch"] == "cvnet_tiny"
    model, checkpoint = model_from_checkpoint(path)
    assert not model.training
    assert checkpoint.epoch == 7 and checkpoint.metrics == {"mAP": 0.5}
    assert checkpoint.config["widths"] == [32, 48, 64] and not checkpoint.plain_state_dict
    assert torch.equal(_embed(model), _embed(trained))
    assert model.global_classifier.out_features == 5  # classifiers loaded, not dropped


def test_plain_state_dict_needs_the_arch_and_infers_the_classes(tmp_path, trained):
    path = str(tmp_path / "weights.pt")
    torch.save(trained.state_dict(), path)
    with pytest.raises(CheckpointError, match="plain state_dict.*--arch"):
        model_from_checkpoint(path)
    model, checkpoint = model_from_checkpoint(path, arch="cvnet_tiny")
    assert checkpoint.plain_state_dict and checkpoint.model_kwargs == {"num_classes": 5}
    assert torch.equal(_embed(model), _embed(trained))


def test_arch_must_agree_with_the_checkpoint_and_exist(tmp_path, trained):
    path = str(tmp_path / "best.pt")
    save_checkpoint(path, trained, arch="cvnet_tiny", model_kwargs={"num_classes": 5})
    with pytest.raises(ConfigError, match="saved for arch 'cvnet_tiny' but 'cvnet' was asked"):
        model_from_checkpoint(path, arch="cvnet")
    weights = str(tmp_path / "weights.pt")
    torch.save(trained.state_dict(), weights)
    with pytest.raises(ConfigError, match="unknown arch 'cvnet_huge'; known models: .*cvnet_tiny"):
        model_from_checkpoint(weights, arch="cvnet_huge")


def test_weights_that_do_not_fit_list_missing_unexpected_and_shapes(tmp_path, trained):
    state = dict(trained.state_dict())
    del state["part_conv.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["part_conv.bias"] = torch.zeros(3)
    path = str(tmp_path / "bad.pt")
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        model_from_checkpoint(path, arch="cvnet_tiny")
    message = str(err.value)
    assert "1 missing keys: part_conv.weight" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "part_conv.bias: checkpoint (3,) vs model (16,)" in message


def test_non_strict_load_keeps_what_fits(tmp_path, trained, caplog):
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("part_conv")}
    path = str(tmp_path / "partial.pt")
    torch.save(state, path)
    model, _ = model_from_checkpoint(path, arch="cvnet_tiny", strict=False)
    assert "missing keys: part_conv.bias, part_conv.weight" in caplog.text
    assert torch.equal(model.stem.conv[0].weight, trained.stem.conv[0].weight)


def test_data_parallel_prefix_gets_a_hint(tmp_path, trained):
    path = str(tmp_path / "dp.pt")
    torch.save({"module." + k: v for k, v in trained.state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="DataParallel"):
        model_from_checkpoint(path, arch="cvnet_tiny")


def test_classifier_count_follows_the_checkpoint_options(tmp_path, trained):
    path = str(tmp_path / "best.pt")
    save_checkpoint(path, trained, arch="cvnet_tiny", model_kwargs={"num_classes": 5})
    with pytest.raises(CheckpointError, match="global_classifier.weight: checkpoint"):
        model_from_checkpoint(path, model_kwargs={"num_classes": 7})


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("empty.pt", b"", "file is empty"),
    ("notes.pt", b"epoch 3: loss 0.41\n", "not a PyTorch checkpoint \\(it is a text file\\)"),
    ("model.onnx", b"\x08\x07\x12\x07pytorch\x1a\x052.13.0", "looks like an ONNX model"),
    ("noise.pt", bytes(range(200, 256)) * 4, "neither the zip nor the pickle signature"),
])
def test_files_that_are_not_checkpoints_are_named(tmp_path, name, content, message):
    path = _write(str(tmp_path / name), content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert path in str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(str(tmp_path))


def test_truncated_checkpoint(tmp_path, trained):
    path = str(tmp_path / "best.pt")
    save_checkpoint(path, trained, arch="cvnet_tiny", model_kwargs={"num_classes": 5})
    with open(path, "rb") as handle:
        data = handle.read()
    _write(path, data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload, culprit", [
    (lambda: torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    (lambda: {"state_dict": {"w": torch.zeros(1)}, "mean": np.zeros(3)}, "numpy"),
])
def test_checkpoints_that_need_pickle_are_refused_with_the_way_out(tmp_path, payload, culprit):
    path = str(tmp_path / "unsafe.pt")
    torch.save(payload(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "arbitrary Python objects" in message and culprit in message
    assert "weights_only=True" in message and "state_dict" in message


def test_other_contents_are_refused(tmp_path):
    path = str(tmp_path / "list.pt")
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, neither a cvnet checkpoint"):
        load_checkpoint(path)
    torch.save({"format": FORMAT, "version": 99, "arch": "cvnet", "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_legacy_format_loads(tmp_path, trained):
    path = str(tmp_path / "old.pt")
    torch.save(trained.state_dict(), path, _use_new_zipfile_serialization=False)
    assert load_checkpoint(path).plain_state_dict


def test_save_refuses_what_weights_only_cannot_read(tmp_path, trained):
    path = str(tmp_path / "best.pt")
    with pytest.raises(ConfigError, match=r"metrics\['mAP'\] is a numpy.float64"):
        save_checkpoint(path, trained, arch="cvnet_tiny", metrics={"mAP": np.float64(0.5)})
    with pytest.raises(ConfigError, match="not a registered model"):
        save_checkpoint(path, trained, arch="resnet50")
    assert os.listdir(str(tmp_path)) == []


def test_mismatch_helper_and_weights_hash(trained):
    model = build_model("cvnet_tiny", num_classes=5)
    assert state_dict_mismatch(model, trained.state_dict()) == ([], [], [])
    first = state_dict_sha256(trained.state_dict())
    assert first == state_dict_sha256(dict(trained.state_dict()))
    assert first != state_dict_sha256(model.state_dict())
