"""The divergence guard: an injected NaN stops cvnet-train and cvnet-search with the message and
exit code 3, and the checkpoints left behind are the last good ones, with finite values."""

import hashlib
import logging
import os

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402

from cvnet.core.errors import CheckpointError, DivergenceError  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from cvnet.search import cli as search_cli  # noqa: E402
from cvnet.search import searcher  # noqa: E402
from cvnet.training import cli as train_cli  # noqa: E402
from cvnet.training import trainer  # noqa: E402
from cvnet.training.guard import (DivergenceGuard, checkpoints_left, divergence_hint,  # noqa: E402
                                  non_finite_tensors)
from cvnet.training.losses import ReIDLoss  # noqa: E402

STEPS = 3  # --max-steps-per-epoch of the end-to-end runs


@pytest.fixture(scope="module")
def synth(synthetic_set):
    """12 identities (6 train, 6 test) x 3 images per view, 64x64."""
    return synthetic_set(12, seed=1)


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def assert_loads_finite(path, epoch):
    checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == epoch
    tensors = [t for t in checkpoint.state_dict.values() if t.is_floating_point()]
    assert tensors and all(torch.isfinite(t).all() for t in tensors)


def nan_on_call(function, call):
    """Wraps a loss function so that its ``call``-th call (from 1) returns NaN."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        result = function(*args, **kwargs)
        if len(calls) == call:
            loss = result[0] if isinstance(result, tuple) else result
            poisoned = loss * float("nan")
            return (poisoned,) + tuple(result[1:]) if isinstance(result, tuple) else poisoned
        return result

    return wrapped


# --- the guard itself ----------------------------------------------------------------------------

def small_model():
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))


def test_guard_names_the_first_bad_step_though_it_checks_later():
    guard = DivergenceGuard(small_model(), steps_per_epoch=10, hint="Try --lr.",
                            saved=lambda: "last.pt holds epoch 1.")
    for step in range(10):
        guard.observe(0, step, torch.tensor(1.0), torch.tensor(2.0))
    guard.check(0, 9)  # all finite: no error
    guard.observe(1, 0, torch.tensor(1.0))
    guard.observe(1, 3, torch.tensor(float("nan")), torch.tensor(1.0))
    guard.observe(1, 4, torch.tensor(float("inf")))  # a later one does not move the first
    with pytest.raises(DivergenceError) as caught:
        guard.check(1, 9)
    assert str(caught.value) == (
        "training diverged: the loss became NaN or inf at epoch 2, step 4 of 10 (found at the "
        "check after epoch 2, step 10 of 10). last.pt holds epoch 1. Try --lr.")


def test_guard_finds_non_finite_batchnorm_statistics_and_weights():
    model = small_model()
    guard = DivergenceGuard(model, steps_per_epoch=5, hint="")
    guard.observe(0, 1, torch.tensor(0.5))
    guard.check(0, 1)
    model[1].running_var[2] = float("inf")  # the loss stays finite: train mode uses batch stats
    model[0].weight.data[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"the weights or BatchNorm statistics became NaN or "
                                              r"inf by epoch 1, step 3 of 5 \(0.weight, "
                                              r"1.running_var\)"):
        guard.check(0, 2)
    assert non_finite_tensors(model) == ["0.weight", "1.running_var"]


def test_hint_offers_what_the_run_did_not_use():
    assert divergence_hint(lr=0.065, amp="fp16") == (
        "Try a lower learning rate (--lr, now 0.065), BF16 mixed precision, which has FP32's "
        "range (--amp-dtype bf16, on GPUs of compute capability 8.0 or newer) or FP32 "
        "(--no-amp).")
    assert divergence_hint(lr=0.03, amp="bf16") == (
        "Try a lower learning rate (--lr, now 0.03) or FP32 (--no-amp).")
    assert divergence_hint(lr=0.03, amp="fp32") == "Try a lower learning rate (--lr, now 0.03)."
    assert "No checkpoint had been written yet" in checkpoints_left(["a.pt"], None)


def test_a_checkpoint_with_non_finite_values_is_never_written(tmp_path):
    path = str(tmp_path / "model.pt")
    model = build_model("cvnet_tiny")
    save_checkpoint(path, model, arch="cvnet_tiny")
    before = sha256(path)
    model.global_bn.running_mean[3] = float("nan")
    with pytest.raises(CheckpointError, match=r"refusing to write .*model.pt: 1 tensor\(s\) hold "
                                              r"NaN or inf \(state_dict\['global_bn.running_mean"
                                              r"'\]\)"):
        save_checkpoint(path, model, arch="cvnet_tiny")
    with pytest.raises(CheckpointError, match=r"extra\['optimizer'\]\[0\]"):
        save_checkpoint(str(tmp_path / "other.pt"), build_model("cvnet_tiny"), arch="cvnet_tiny",
                        extra={"optimizer": [torch.tensor([float("inf")])]})
    assert sha256(path) == before and not os.path.exists(str(tmp_path / "other.pt"))


# --- end to end: an injected NaN ---------------------------------------------------------------

def _run_args(data, output, epochs):
    """The flags cvnet-train and cvnet-search share, for a tiny CPU run of STEPS per epoch."""
    return ["--data", data, "--output", output, "--arch", "cvnet_tiny", "--input-size", "32",
            "--epochs", str(epochs), "--batch-size", "6", "--num-instances", "2",
            "--warmup-epochs", "0", "--workers", "0", "--device", "cpu",
            "--max-steps-per-epoch", str(STEPS)]


def _train_args(data, output, epochs):
    return _run_args(data, output, epochs) + ["--eval-every", "1"]


def test_cvnet_train_stops_at_an_injected_nan_and_keeps_the_last_good_checkpoints(
        synth, tmp_path, monkeypatch, caplog):
    run = str(tmp_path / "run")
    assert train_cli.main(_train_args(synth, run, epochs=1)) == 0
    files = [os.path.join(run, name) for name in ("last.pt", "model.pt")]
    before = [sha256(path) for path in files]

    # resumed at epoch 2: the loss of its second step (call 2) is NaN
    monkeypatch.setattr(trainer.ReIDLoss, "forward", nan_on_call(ReIDLoss.forward, 2))
    caplog.set_level(logging.ERROR)
    assert train_cli.main(_train_args(synth, run, epochs=3) + ["--resume"]) == 3
    message = caplog.text
    assert ("training diverged: the loss became NaN or inf at epoch 2, step 2 of 3 (found at "
            "the check after epoch 2, step 3 of 3)") in message
    assert "still hold epoch 1, the last good state: --resume continues from there" in message
    assert "--lr, now 0.065" in message  # FP32 on the CPU: no AMP advice
    assert "--no-amp" not in message
    assert [sha256(path) for path in files] == before  # untouched
    for path in files:
        assert_loads_finite(path, epoch=1)


def test_cvnet_search_stops_at_an_injected_nan(synth, tmp_path, monkeypatch, caplog):
    run = str(tmp_path / "search")
    # epoch 1 runs clean (3 steps); the architecture loss of epoch 2's first step is NaN
    monkeypatch.setattr(searcher, "triplet_objective",
                        nan_on_call(searcher.triplet_objective, STEPS + 1))
    caplog.set_level(logging.ERROR)
    assert search_cli.main(_run_args(synth, run, epochs=2)) == 3
    assert "the loss became NaN or inf at epoch 2, step 1 of 3" in caplog.text
    assert "search_last.pt still hold epoch 1" in caplog.text
    assert_loads_finite(os.path.join(run, "search_last.pt"), epoch=1)
    assert not os.path.exists(os.path.join(run, "ops.json"))
