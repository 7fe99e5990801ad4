"""cvnet-synth -> cvnet-train -> cvnet-eval end to end on tiny settings; resume; DDP on gloo."""

import json
import logging
import os
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from cvnet.core.cpu import CpuLoad, CpuSnapshot  # noqa: E402
from cvnet.jetson import eval_cli  # noqa: E402
from cvnet.models import threads  # noqa: E402
from cvnet.models.checkpoint import load_checkpoint  # noqa: E402
from cvnet.training import cli as train_cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def synth(synthetic_set):
    """8 identities (4 train, 4 test) x 3 images per view, 64x64."""
    return synthetic_set(8, seed=0)


def _train_args(data, output, epochs=1):
    return ["--data", data, "--output", output, "--arch", "cvnet_tiny", "--input-size", "64",
            "--epochs", str(epochs), "--batch-size", "8", "--num-instances", "2",
            "--warmup-epochs", "1", "--workers", "0", "--device", "cpu", "--eval-every", "1"]


def test_synth_train_eval_path(synth, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert train_cli.main(_train_args(synth, run, epochs=2)) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "\r" not in captured.err  # no progress-bar fragments where stderr is not a terminal
    assert "cvnet_tiny after 2 epochs" in out and "| A2G |" in out and "| G2A |" in out
    assert "cvnet_tiny before training" in out

    checkpoint = load_checkpoint(os.path.join(run, "model.pt"))
    assert checkpoint.arch == "cvnet_tiny" and checkpoint.epoch == 2
    assert checkpoint.model_kwargs["num_classes"] == 4
    assert set(checkpoint.metrics) == {"A2G", "G2A"} and checkpoint.config["img_size"] == 64
    assert 0.0 <= checkpoint.metrics["A2G"]["mAP"] <= 1.0
    assert set(checkpoint.extra["initial_metrics"]) == {"A2G", "G2A"}

    report, picture = str(tmp_path / "eval.json"), str(tmp_path / "ranks.png")
    assert eval_cli.main([os.path.join(run, "model.pt"), "--data", synth, "--json-out", report,
                          "--visualize", picture, "--num-queries", "3", "--topk", "4",
                          "--device", "cpu"]) == 0
    metrics = json.load(open(report))["metrics"]
    assert metrics["A2G"]["num_query"] == 12 and metrics["A2G"]["num_gallery"] == 12
    # the checkpoint's own evaluation and a fresh one through cvnet-eval agree
    assert metrics["A2G"]["mAP"] == pytest.approx(checkpoint.metrics["A2G"]["mAP"], abs=1e-6)
    assert os.path.getsize(picture) > 1000
    assert "model.pt (pytorch, 64x64)" in capsys.readouterr().out


def test_training_decides_its_threads_once(synth, tmp_path, monkeypatch, caplog):
    """The machine is idle when training starts, then other processes (as its own DataLoader
    workers would be) keep both CPUs busy: the thread count stays what the start decided, so
    the run does not follow itself and two runs of one --seed sum in the same order."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_STATE", threads._State())
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    monkeypatch.setattr(threads, "others_busy_cores", lambda seconds: CpuLoad(0.0, 2, seconds))

    def busy_now():  # from the start on, others use 2 cores' worth of CPU time
        now = time.perf_counter()
        return CpuSnapshot(2.0 * now, 0.0, now, 2)

    monkeypatch.setattr(threads, "cpu_snapshot", busy_now)
    monkeypatch.setattr(threads, "RECHECK_SECONDS", 0.0)  # would look at every step
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="cvnet.models.threads"):
            assert train_cli.main(_train_args(synth, str(tmp_path / "run"))) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "PyTorch CPU threads: 2 (" in caplog.text and "fixed for this run" in caplog.text
    assert "now keep" not in caplog.text


def test_interrupted_run_resumes_from_last_checkpoint(synth, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = str(tmp_path / "run")
    assert train_cli.main(_train_args(synth, run, epochs=1)) == 0
    first = load_checkpoint(os.path.join(run, "last.pt"))
    assert first.epoch == 1 and "optimizers" in first.extra
    assert train_cli.main(_train_args(synth, run, epochs=2) + ["--resume"]) == 0
    assert "resuming" in caplog.text and "after epoch 1" in caplog.text
    assert load_checkpoint(os.path.join(run, "model.pt")).epoch == 2


def test_cli_errors_are_one_clear_line(synth, tmp_path, caplog):
    assert train_cli.main(["--epochs", "1"]) == 1
    assert "no dataset: pass --data PATH" in caplog.text
    assert train_cli.main(_train_args(synth, str(tmp_path / "fresh")) + ["--resume"]) == 1
    assert "no last.pt in" in caplog.text
    assert eval_cli.main([str(tmp_path / "missing.pt"), "--data", synth]) == 1
    assert "missing.pt does not exist" in caplog.text


@pytest.mark.slow
def test_two_process_ddp_on_gloo(synth, tmp_path):
    run = str(tmp_path / "ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "cvnet.training.cli"] + _train_args(synth, run)
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "on cpu x2" in result.stdout
    assert load_checkpoint(os.path.join(run, "model.pt")).epoch == 1


def test_exported_onnx_scores_like_its_checkpoint(synth, tmp_path):
    from cvnet.export import cli as export_cli

    run = str(tmp_path / "run")
    assert train_cli.main(_train_args(synth, run, epochs=1)) == 0
    checkpoint, onnx_path = os.path.join(run, "model.pt"), str(tmp_path / "tiny.onnx")
    assert export_cli.main([checkpoint, "-o", onnx_path, "--input-size", "64"]) == 0
    scores = {}
    for path in (checkpoint, onnx_path):
        out = str(tmp_path / (os.path.basename(path) + ".json"))
        assert eval_cli.main([path, "--data", synth, "--json-out", out, "--device", "cpu"]) == 0
        scores[path] = json.load(open(out))["metrics"]
    for protocol in ("A2G", "G2A"):
        assert scores[onnx_path][protocol]["mAP"] == pytest.approx(
            scores[checkpoint][protocol]["mAP"], abs=1e-4)


def test_history_records_every_epoch_and_survives_a_resume(synth, tmp_path):
    run = str(tmp_path / "run")
    assert train_cli.main(_train_args(synth, run, epochs=1)) == 0
    assert train_cli.main(_train_args(synth, run, epochs=2) + ["--resume"]) == 0
    with open(os.path.join(run, "history.json")) as handle:
        epochs = json.load(handle)["epochs"]
    assert [entry["epoch"] for entry in epochs] == [0, 1, 2]  # 0: the untrained model
    assert set(epochs[0]) == {"epoch", "metrics"}
    for entry in epochs[1:]:
        assert entry["precision"] == "fp32" and entry["images_per_s"] > 0
        assert entry["loss"] == pytest.approx(entry["ce_global"] + entry["ce_part"]
                                              + entry["tri_global"] + entry["tri_part"], abs=1e-4)
        assert set(entry["metrics"]) == {"A2G", "G2A"}
