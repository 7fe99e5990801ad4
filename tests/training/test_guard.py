"""The divergence guard: an injected NaN stops cvnet-train and cvnet-search with the message and
exit code 3, and the checkpoints left behind are the last good ones, with finite values."""

import hashlib
import logging
import os
import socket
import subprocess
import sys

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
from cvnet.training.guard import (MIN_LOSS_SCALE, DivergenceGuard,  # noqa: E402
                                  checkpoints_left, divergence_hint, non_finite_tensors)
from cvnet.training.losses import ReIDLoss  # noqa: E402

STEPS = 3  # --max-steps-per-epoch of the end-to-end runs
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def cpu_scaler(init_scale=2.0 ** 16):
    """An enabled FP16 gradient scaler that runs on the CPU (torch >= 2.3), else the test skips."""
    try:
        return torch.amp.GradScaler("cpu", init_scale=init_scale)
    except (TypeError, RuntimeError, AttributeError) as err:
        pytest.skip("this torch has no CPU GradScaler ({})".format(err))


def inf_gradients(tensor):
    """Makes every gradient flowing back through ``tensor`` infinite; its value stays finite."""
    tensor.register_hook(lambda grad: grad * float("inf"))
    return tensor


def test_guard_stops_a_run_whose_fp16_scaler_skips_every_step():
    """A finite loss with inf gradients at every step: the scaler skips each step and halves
    its scale, the weights stay finite and untrained; the guard stops the run at the step the
    scale falls below MIN_LOSS_SCALE (2**16 halved 17 times: 0.5), with what to try."""
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = cpu_scaler()
    guard = DivergenceGuard(model, steps_per_epoch=40, hint="Try --no-amp.",
                            scalers=[scaler], optimizers=[optimizer])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DivergenceError) as caught:
        for step in range(40):
            loss = inf_gradients(model(torch.randn(8, 4))).pow(2).mean()
            guard.observe(0, step, loss)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            guard.check(0, step)
    assert step == 16 and scaler.get_scale() == 0.5 < MIN_LOSS_SCALE
    assert bool(torch.isfinite(loss)) and not non_finite_tensors(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # untrained
    assert str(caught.value) == (
        "training diverged: the gradients were NaN or inf at so many steps that the FP16 "
        "gradient scaler, which skips such steps, lowered its loss scale to 0.5 (below 1) by "
        "epoch 1, step 17 of 40: the weights stopped training though the loss stayed finite. "
        "Try --no-amp.")


def test_guard_ignores_a_disabled_scaler_and_a_scale_above_the_floor():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = cpu_scaler(init_scale=2.0)  # one skip halves it to the floor, not below
    guard = DivergenceGuard(model, steps_per_epoch=5, hint="",
                            scalers=[scaler, torch.amp.GradScaler("cuda", enabled=False)])
    guard.check(0, 0)  # no loss scaled yet: nothing to read
    loss = inf_gradients(model(torch.randn(8, 4))).pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == MIN_LOSS_SCALE
    guard.check(0, 1)


def test_guard_checks_the_optimiser_state_before_a_checkpoint():
    """Adam's second moment can hold inf while the weights stay finite (the update is then 0):
    the check before a checkpoint raises a DivergenceError naming it, not a file error later."""
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    optimizer.state[model[0].weight]["exp_avg_sq"][0, 0] = float("inf")
    guard = DivergenceGuard(model, steps_per_epoch=5, hint="Try --lr.", optimizers=[optimizer])
    guard.check(0, 2)  # within the epoch: the state is not read (it costs a pass over it)
    with pytest.raises(DivergenceError, match=r"the optimiser state \(momentum, Adam moments\) "
                                              r"became NaN or inf by epoch 1, step 5 of 5 "
                                              r"\(Adam exp_avg_sq of 0.weight\)\. Try --lr\."):
        guard.check(0, 4, optimizer_state=True)


TWO_RANKS = """
import os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from cvnet.core.errors import DivergenceError
from cvnet.training.guard import DivergenceGuard

def run(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=0.5 if rank == 1 else 2.0 ** 16)
    scaler.scale(torch.ones(()))  # the scale exists once a loss was scaled
    guard = DivergenceGuard(torch.nn.Linear(4, 4), steps_per_epoch=10, hint="Try --no-amp.",
                            scalers=[scaler], distributed=True)
    try:
        guard.check(0, 3)
        text = "passed"
    except DivergenceError as err:
        text = str(err)
    with open(os.path.join(out, str(rank)), "w") as handle:
        handle.write(text)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
"""


def test_a_low_scale_on_one_rank_stops_every_rank(tmp_path):
    """Distributed (gloo, 2 processes): the scale flag is all-reduced with the others, so the
    rank whose scale is fine stops at the same check as the one whose scale fell."""
    cpu_scaler()  # skips without a CPU scaler
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    result = subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    texts = [(tmp_path / name).read_text() for name in ("0", "1")]
    assert "lowered its loss scale to a value on another process (below 1) by epoch 1, step 4 " \
           "of 10" in texts[0]
    assert "lowered its loss scale to 0.5 (below 1) by epoch 1, step 4 of 10" in texts[1]


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


def test_cvnet_train_stops_with_exit_3_when_the_optimiser_state_turns_inf(synth, tmp_path,
                                                                        monkeypatch, caplog):
    """The momentum buffer turns inf at the epoch's last step, so the weights are still finite
    when the epoch ends: the guard's check before saving stops the run (exit 3, divergence),
    where save_checkpoint's refusal used to end it with exit 1 (a file error)."""
    run = str(tmp_path / "run")
    calls = []
    original = trainer.Optimizers.step

    def step(self, scaler=None):
        original(self, scaler)
        calls.append(1)
        if len(calls) == STEPS:
            optimizer = self.optimizers[0]
            parameter = optimizer.param_groups[0]["params"][0]
            optimizer.state[parameter]["momentum_buffer"].view(-1)[0] = float("inf")

    monkeypatch.setattr(trainer.Optimizers, "step", step)
    caplog.set_level(logging.ERROR)
    assert train_cli.main(_train_args(synth, run, epochs=2)) == 3
    assert ("the optimiser state (momentum, Adam moments) became NaN or inf by epoch 1, step 3 "
            "of 3 (SGD momentum_buffer of ") in caplog.text
    assert "No checkpoint had been written yet" in caplog.text
    assert not os.path.exists(os.path.join(run, "last.pt"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_cvnet_train_stops_when_fp16_loss_scaling_skips_every_step(synth, tmp_path, monkeypatch,
                                                                     caplog):
    """FP16 on a GPU, as it would run there: the gradient scaler is enabled (on the CPU here,
    starting at 4 so that three skipped steps take it below 1) and every step's gradients are
    inf while the loss is finite. Before, the run ended with exit 0 and untrained weights."""
    cpu_scaler()  # skips the test where torch has no CPU scaler
    run = str(tmp_path / "run")
    monkeypatch.setattr(trainer, "grad_scaler", lambda amp: cpu_scaler(init_scale=4.0))
    forward = ReIDLoss.forward

    def poisoned(self, *args, **kwargs):
        loss, parts = forward(self, *args, **kwargs)
        return inf_gradients(loss * 1.0), parts

    monkeypatch.setattr(trainer.ReIDLoss, "forward", poisoned)
    caplog.set_level(logging.ERROR)
    assert train_cli.main(_train_args(synth, run, epochs=2)) == 3
    assert "lowered its loss scale to 0.5 (below 1) by epoch 1, step 3 of 3" in caplog.text
    assert not os.path.exists(os.path.join(run, "model.pt"))


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
