"""cvnet-search: the supernet, its optimiser groups, the derived sequence, a tiny search -> train
-> export end to end, resume, the op-sequence files build_model and cvnet-train accept, and
cvnet-compare-ops."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cv2  # noqa: E402

from cvnet.core.artifact import read_sidecar  # noqa: E402
from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.export import cli as export_cli  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from cvnet.models.dfc import SEARCH_SPACE, FilterMixed, make_filter, parse_ops  # noqa: E402
from cvnet.search import cli as search_cli  # noqa: E402
from cvnet.search import compare as compare_cli  # noqa: E402
from cvnet.search.config import SearchConfig  # noqa: E402
from cvnet.search.searcher import split_identities, triplet_objective  # noqa: E402
from cvnet.search.supernet import (arch_parameters, build_supernet, derive_ops,  # noqa: E402
                                   op_weights, weight_parameters, weights_to_ops)
from cvnet.training import cli as train_cli  # noqa: E402
from cvnet.training.config import config_from_mapping  # noqa: E402
from cvnet.training.losses import ReIDLoss  # noqa: E402
from cvnet.training.optim import Optimizers  # noqa: E402


@pytest.fixture(scope="module")
def synth(synthetic_set):
    """12 identities (6 train, 6 test) x 3 images per view, 64x64."""
    return synthetic_set(12, seed=1)


def _search_args(data, output, epochs=1):
    return ["--data", data, "--output", output, "--arch", "cvnet_tiny", "--input-size", "32",
            "--epochs", str(epochs), "--batch-size", "6", "--num-instances", "2",
            "--warmup-epochs", "0", "--workers", "0", "--device", "cpu",
            "--max-steps-per-epoch", "3"]


def _pair(channels=8, size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(2, channels, size, size, generator=generator),
            torch.randn(2, channels, size, size, generator=generator))


# --- the search cell and the supernet ---------------------------------------------------------

@pytest.mark.parametrize("index", range(len(SEARCH_SPACE)))
def test_search_cell_with_one_dominant_op_is_that_op(index):
    torch.manual_seed(0)
    cell = FilterMixed(8, gate_reduction=4)
    cell.candidates[3].gamma.data.fill_(0.5)  # make Attention differ from None
    with torch.no_grad():
        cell.arch_logits.copy_(torch.full((4,), -30.0))
        cell.arch_logits[index] = 30.0
    pair = _pair()
    mixed = cell(pair)
    alone = cell.candidates[index](pair)
    for got, want in zip(mixed, alone):
        assert torch.allclose(got, want, atol=1e-5)


def test_search_cell_starts_as_the_equal_mix_of_all_four_ops():
    torch.manual_seed(0)
    cell = FilterMixed(8, gate_reduction=4)
    pair = _pair(seed=3)
    outputs = [candidate(pair) for candidate in cell.candidates]
    want = sum(out[0] for out in outputs) / 4
    assert torch.allclose(cell(pair)[0], want, atol=1e-6)
    assert torch.allclose(cell.weights(), torch.full((4,), 0.25))
    assert isinstance(make_filter("M", 8), FilterMixed)


def test_supernet_forward_backward_reaches_architecture_and_weights():
    torch.manual_seed(0)
    model = build_supernet("cvnet_tiny", num_classes=3).train()
    assert "".join(model.ops) == "M" * 12
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss, _ = ReIDLoss()(model(images), labels)
    loss.backward()
    arch = arch_parameters(model)
    assert len(arch) == 12 and all(p.shape == (4,) for p in arch)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch)
    assert all(p.grad is not None for p in weight_parameters(model) if p.requires_grad
               and p is not model.global_bn.bias)
    # eval mode: the embedding of the layout it was built from
    model.eval()
    assert model(images).shape == (6, build_model("cvnet_tiny").embedding_dim)


def test_supernet_refuses_given_ops_and_layouts_without_dfc_stages():
    with pytest.raises(ConfigError, match="do not pass ops"):
        build_supernet("cvnet_tiny", ops="G" * 12)
    with pytest.raises(ConfigError, match="no DFC stages"):
        build_supernet("cvnet_msl_only")


def test_architecture_and_weight_parameters_go_to_separate_optimisers():
    model = build_supernet("cvnet_tiny", num_classes=3)
    arch_ids = {id(p) for p in arch_parameters(model)}
    weight_ids = {id(p) for p in weight_parameters(model)}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert arch_ids and weight_ids and not arch_ids & weight_ids
    assert arch_ids | weight_ids == trainable
    sgd = Optimizers(model, total_steps=10, warmup_steps=0, exclude=("arch_logits",))
    in_sgd = {id(p) for opt in sgd.optimizers for g in opt.param_groups for p in g["params"]}
    assert in_sgd == weight_ids


def test_derived_sequence_is_the_argmax_per_position_and_builds():
    model = build_supernet("cvnet_tiny", num_classes=3)
    wanted = "GAGGGGGNGEAA"
    with torch.no_grad():
        for cell, code in zip(arch_parameters(model), wanted):
            cell[SEARCH_SPACE.index(code)] = 1.0
    weights = op_weights(model)
    assert weights.shape == (12, 4) and np.allclose(weights.sum(axis=1), 1.0)
    assert derive_ops(model) == wanted == weights_to_ops(weights)
    assert build_model("cvnet_tiny", ops=derive_ops(model)).ops == tuple(wanted)


def test_triplet_objective_needs_no_classifier():
    model = build_supernet("cvnet_tiny", num_classes=0).train()
    loss = triplet_objective(model(torch.randn(4, 3, 32, 32)), torch.tensor([5, 5, 9, 9]), 0.3)
    assert loss.ndim == 0 and loss.item() >= 0


# --- identity split and configuration ---------------------------------------------------------

def test_split_identities_is_disjoint_complete_and_seeded():
    labels = [i // 3 for i in range(30)]  # 10 identities
    first, second = split_identities(labels, 0.5, seed=0)
    assert len(first) == len(second) == 5
    assert not set(first) & set(second) and set(first) | set(second) == set(range(10))
    assert split_identities(labels, 0.5, seed=0) == (first, second)
    assert split_identities(labels, 0.5, seed=1) != (first, second)
    assert len(split_identities(labels, 0.7)[0]) == 7
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_identities(labels, 1.0)
    with pytest.raises(ConfigError, match="at least 2"):
        split_identities([0, 1, 2], 0.5)


def test_search_config_extends_the_training_config():
    config = config_from_mapping({"arch_lr": 0.01, "epochs": 5}, cls=SearchConfig)
    assert isinstance(config, SearchConfig)
    assert config.arch_lr == 0.01 and config.epochs == 5 and config.split_ratio == 0.5
    assert config.output == "runs/search" and config.arch_beta1 == 0.5
    with pytest.raises(ConfigError, match="unknown key 'arch_lr'"):
        config_from_mapping({"arch_lr": 0.01})  # not a training key


# --- op sequence files --------------------------------------------------------------------------

def test_ops_json_files_are_accepted_wherever_a_sequence_is(tmp_path):
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"ops": "GAGGGGGNGEAA", "weights": {}}))
    assert parse_ops(str(path)) == tuple("GAGGGGGNGEAA")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["gate"] * 12))
    assert parse_ops(str(listed)) == ("G",) * 12
    model = build_model("cvnet", ops=str(path))
    assert "".join(model.ops) == "GAGGGGGNGEAA"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"), ("{not json", "not valid JSON"), ('{"weights": 1}', "no sequence"),
    ('{"ops": "GXG"}', "filtration op #1 is 'X'")])
def test_bad_ops_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "ops.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        parse_ops(str(path))


# --- end to end -------------------------------------------------------------------------------

def test_tiny_search_end_to_end_then_train_the_result(synth, tmp_path, capsys):
    run = str(tmp_path / "search")
    assert search_cli.main(_search_args(synth, run, epochs=2)) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "\r" not in captured.err  # no progress-bar fragments where stderr is not a terminal
    document = json.load(open(os.path.join(run, "ops.json")))
    ops = document["ops"]
    assert len(ops) == 12 and set(ops) <= set(SEARCH_SPACE)
    assert f"searched ops: {ops}" in out and "| s1.m1.a |" in out
    assert document["epochs"] == 2 and len(document["weights"]) == 12
    assert all(sum(row.values()) == pytest.approx(1.0, abs=1e-4)
               for row in document["weights"].values())
    assert document["weight_identities"] == 3 and document["architecture_identities"] == 3

    history = json.load(open(os.path.join(run, "history.json")))
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    first, last = (np.array(history["epochs"][i]["weights"]) for i in (0, 1))
    assert first.shape == (12, 4) and not np.allclose(first, last)  # the logits moved
    assert not np.allclose(last, 0.25)
    heatmap = cv2.imread(os.path.join(run, "weights.png"))
    assert heatmap is not None and heatmap.shape[0] > 12 * 20

    # search -> train: cvnet-train takes the ops.json and records the codes themselves
    trained = str(tmp_path / "train")
    assert train_cli.main(["--data", synth, "--output", trained, "--arch", "cvnet_tiny",
                           "--ops", os.path.join(run, "ops.json"), "--input-size", "32",
                           "--epochs", "1", "--batch-size", "6", "--num-instances", "2",
                           "--warmup-epochs", "0", "--workers", "0", "--device", "cpu"]) == 0
    checkpoint = load_checkpoint(os.path.join(trained, "model.pt"))
    assert checkpoint.model_kwargs["ops"] == ops
    model, _ = model_from_checkpoint(os.path.join(trained, "model.pt"))
    assert "".join(model.ops) == ops

    # ... -> export: the searched model exports and its ONNX matches PyTorch
    pytest.importorskip("onnxruntime")
    onnx_path = str(tmp_path / "searched.onnx")
    assert export_cli.main([os.path.join(trained, "model.pt"), "--input-size", "32",
                            "--verify-images", "2", "-o", onnx_path]) == 0
    assert read_sidecar(onnx_path + ".json").verification["passed"]


def test_interrupted_search_resumes_and_refuses_other_settings(synth, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = str(tmp_path / "search")
    assert search_cli.main(_search_args(synth, run, epochs=1)) == 0
    saved = load_checkpoint(os.path.join(run, "search_last.pt"))
    assert saved.epoch == 1 and "arch_optimizer" in saved.extra
    assert search_cli.main(_search_args(synth, run, epochs=2) + ["--resume"]) == 0
    assert "after epoch 1" in caplog.text
    history = json.load(open(os.path.join(run, "history.json")))
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert search_cli.main(_search_args(synth, run, epochs=3) + ["--resume", "--seed", "5"]) == 1
    assert "resume with the original settings" in caplog.text
    assert search_cli.main(_search_args(synth, str(tmp_path / "new"), 1) + ["--resume"]) == 1
    assert "no search_last.pt" in caplog.text


def test_a_corrupt_training_image_is_reported_and_left_out(synth, tmp_path, caplog):
    data = str(tmp_path / "data")
    shutil.copytree(synth, data)
    with open(os.path.join(data, "dataset.csv")) as handle:
        first_train = next(line.split(",")[0] for line in handle if line.rstrip().endswith("train"))
    with open(os.path.join(data, first_train), "wb") as handle:
        handle.write(b"not a jpeg")
    assert search_cli.main(_search_args(data, str(tmp_path / "search"))) == 0
    assert "leaving out 1 unreadable training images" in caplog.text
    assert os.path.exists(str(tmp_path / "search" / "ops.json"))


def test_compare_ops_trains_each_strategy_once(synth, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    out = str(tmp_path / "fig5")
    args = ["--data", synth, "--output", out, "--arch", "cvnet_tiny", "--input-size", "32",
            "--epochs", "1", "--batch-size", "6", "--num-instances", "2", "--warmup-epochs",
            "0", "--workers", "0", "--device", "cpu", "--ops", "GAGGGGGNGEAA",
            "--strategies", "searched", "none"]
    assert compare_cli.main(args) == 0
    table = capsys.readouterr().out
    assert "| searched | GAGGGGGNGEAA |" in table and "| none | NNNNNNNNNNNN |" in table
    assert "A2G mAP" in table and "G2A Rank-1" in table
    summary = json.load(open(os.path.join(out, "comparison.json")))
    assert set(summary) == {"searched", "none"}
    assert load_checkpoint(os.path.join(out, "none", "model.pt")).model_kwargs["ops"] == "N" * 12
    assert compare_cli.main(args) == 0  # finished strategies are not trained again
    assert caplog.text.count("already trained") == 2
    assert compare_cli.main(args + ["--lr", "0.5"]) == 1  # not the same budget: refused
    assert "was trained with other settings (lr 0.065 there, 0.5 now)" in caplog.text


def test_compare_ops_strategies():
    chosen = compare_cli.strategy_ops(["searched", "paper", "gate"], "NEGANEGANEGA", 12)
    assert chosen == [("searched", "NEGANEGANEGA"), ("paper", "GAGGGGGNGEAA"),
                      ("gate", "G" * 12)]
    assert compare_cli.strategy_ops(["attention"], None, 8) == [("attention", "A" * 8)]
    with pytest.raises(ConfigError, match="needs --ops"):
        compare_cli.strategy_ops(["searched"], None, 12)
    with pytest.raises(ConfigError, match="4 ops"):
        compare_cli.strategy_ops(["searched"], "GAGG", 12)
