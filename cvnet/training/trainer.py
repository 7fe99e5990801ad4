"""The training loop: P x K batches, AMP on CUDA, DDP under torchrun, atomic checkpoints, resume.

A divergence guard (:mod:`cvnet.training.guard`) stops the run at its first non-finite loss,
weight, BatchNorm statistic or optimiser state, or when FP16's gradient scaler keeps skipping
steps, before anything non-finite is saved. Every epoch's mean losses,
learning rates, speed and (when evaluated) metrics go to ``history.json`` in the run folder.

Single process: ``fit(...)`` directly. Several processes (GPUs or CPU ranks on the gloo
backend): launch with ``torchrun --nproc_per_node N -m cvnet.training.cli ...``; each process
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment torchrun sets.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_text_atomic
from cvnet.core.progress import progress_bar
from cvnet.models.threads import configure_torch
from cvnet.models import build_model, parse_ops
from cvnet.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cvnet.models.device import resolve_device
from cvnet.training.amp import autocast, grad_scaler, load_scaler_state, resolve_amp
from cvnet.training.config import TrainConfig, config_differences
from cvnet.training.data import build_train_loader
from cvnet.training.guard import CHECK_EVERY, DivergenceGuard, checkpoints_left, divergence_hint
from cvnet.training.losses import ReIDLoss
from cvnet.training.optim import Optimizers

logger = logging.getLogger(__name__)

#: ``evaluate(model) -> {protocol: {metric: value}}``, run on rank 0 with the eval-mode model.
EvaluateFn = Callable[[nn.Module], Dict[str, Dict[str, float]]]

MODEL_FILE = "model.pt"
RESUME_FILE = "last.pt"
HISTORY_FILE = "history.json"


class Distributed(NamedTuple):
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Joins the process group torchrun describes in the environment (no-op when absent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(0, 1, 0)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def fit(config: TrainConfig, train_paths: Sequence[str], train_labels: Sequence[int], *,
        evaluate: Optional[EvaluateFn] = None, resume: bool = False) -> str:
    """Trains a model and writes ``model.pt`` (and ``last.pt`` for resuming) to the run folder.

    Args:
        config: The run's settings; saved into every checkpoint.
        train_paths: Training images, already checked to decode.
        train_labels: Contiguous identity labels 0..C-1, one per image.
        evaluate: Called on rank 0 every ``config.eval_every`` epochs and after the last one.
            ``config.model_kwargs["ops"]`` may name an ops file; the checkpoints record its
            codes.
        resume: Continue from ``last.pt`` in the run folder.

    Returns:
        Path of the final ``model.pt``.
    """
    if "ops" in config.model_kwargs:  # record the codes, not a file that may move
        ops = "".join(parse_ops(config.model_kwargs["ops"]))
        config = dataclasses.replace(config, model_kwargs={**config.model_kwargs, "ops": ops})
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    configure_torch(torch, adaptive=False)  # decided once: see cvnet.models.threads
    world = init_distributed(device)
    torch.manual_seed(config.seed)
    num_classes = len(set(int(label) for label in train_labels))
    model = build_model(config.arch, num_classes=num_classes, **config.model_kwargs).to(device)
    data = build_train_loader(config, train_paths, train_labels,
                              pin_memory=device.type == "cuda", rank=world.rank,
                              world_size=world.world_size)
    steps_per_epoch = data.steps_per_epoch
    optimizers = Optimizers(model, lr=config.lr, momentum=config.momentum,
                            weight_decay=config.weight_decay, adam_modules=config.adam_modules,
                            adam_lr=config.adam_lr, total_steps=steps_per_epoch * config.epochs,
                            warmup_steps=steps_per_epoch * config.warmup_epochs,
                            min_lr_ratio=config.min_lr_ratio, schedule=config.lr_schedule)
    amp = resolve_amp(config.amp, config.amp_dtype, device)
    scaler = grad_scaler(amp)
    criterion = ReIDLoss(label_smoothing=config.label_smoothing,
                         triplet_margin=config.triplet_margin)
    make_folders(config.output)  # durable: it holds the checkpoints
    start_epoch, metrics = 0, {}
    if resume:
        start_epoch, metrics = _restore(os.path.join(config.output, RESUME_FILE), config, model,
                                        optimizers, scaler)
    saved_epoch = start_epoch or None
    guard = DivergenceGuard(
        model, steps_per_epoch=steps_per_epoch,
        hint=divergence_hint(lr=config.lr, amp=amp.name), distributed=world.world_size > 1,
        scalers=[scaler], optimizers=optimizers.optimizers,
        saved=lambda: checkpoints_left([os.path.join(config.output, RESUME_FILE),
                                        os.path.join(config.output, MODEL_FILE)], saved_epoch))
    initial_metrics = {}
    history = _read_history(config.output, start_epoch) if world.is_main else []
    if evaluate is not None and start_epoch == 0 and world.is_main:
        initial_metrics = evaluate(model.eval())  # the untrained baseline, for comparison
        logger.info("before training: %s", _format_metrics(initial_metrics))
        history = [{"epoch": 0, "metrics": initial_metrics}]
    net = DistributedDataParallel(model) if world.world_size > 1 else model
    if world.is_main:
        logger.info("training %s (%d identities, %d images) on %s x%d, %s: %d epochs of %d "
                    "steps", config.arch, num_classes, len(data.dataset), device,
                    world.world_size, "AMP " + amp.name if amp.enabled else "FP32",
                    config.epochs, steps_per_epoch)

    for epoch in range(start_epoch, config.epochs):
        data.set_epoch(epoch)
        net.train()
        started, seen, done = time.perf_counter(), 0, 0
        sums = None  # the epoch's summed loss parts, kept on the device
        progress = progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", logger,
                                enabled=world.is_main)
        for step, (images, labels) in enumerate(data.loader):
            if step >= steps_per_epoch:
                break
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with autocast(amp, device):
                output = net(images)
            loss, parts = criterion(output, labels)
            guard.observe(epoch, step, loss)  # no GPU wait: the flag stays on the device
            step_parts = torch.stack([loss.detach()] + list(parts.values()))
            sums = step_parts if sums is None else sums + step_parts
            optimizers.zero_grad()
            scaler.scale(loss).backward()  # a disabled scaler (FP32, BF16) passes through
            optimizers.step(scaler)
            scaler.update()
            seen += images.shape[0] * world.world_size
            done += 1
            progress.update(1)
            # Reading a value waits for the GPU: only every CHECK_EVERY steps, on every rank.
            if step % CHECK_EVERY == 0:
                guard.check(epoch, step)
                if world.is_main:
                    progress.set_postfix(loss=f"{loss.item():.3f}",
                                         img_s=f"{seen / (time.perf_counter() - started):.1f}")
        progress.close()
        # before evaluating or saving anything (the optimiser state goes into last.pt)
        guard.check(epoch, steps_per_epoch - 1, optimizer_state=True)
        speed = seen / (time.perf_counter() - started)
        means = dict(zip(["loss"] + list(parts), (sums / max(1, done)).tolist()))
        if world.is_main:
            logger.info("epoch %d: mean loss %.4f (%s), lr %s, %.1f img/s", epoch + 1,
                        means["loss"], ", ".join(f"{k} {v:.3f}" for k, v in means.items()
                                                 if k != "loss"),
                        ", ".join(f"{lr:.2e}" for lr in optimizers.learning_rates()), speed)
            history.append({"epoch": epoch + 1, **{k: round(v, 6) for k, v in means.items()},
                            "lr": optimizers.learning_rates(), "images_per_s": round(speed, 1),
                            "precision": amp.name})
        last_epoch = epoch + 1 == config.epochs
        if (epoch + 1) % max(1, config.eval_every) == 0 or last_epoch:
            if world.is_main:
                if evaluate is not None:
                    metrics = evaluate(model.eval())
                    logger.info("epoch %d: %s", epoch + 1, _format_metrics(metrics))
                    history[-1]["metrics"] = metrics
                _save(config, model, optimizers, scaler, epoch + 1, metrics, initial_metrics)
            saved_epoch = epoch + 1
            if world.world_size > 1:
                dist.barrier()
        if world.is_main:
            write_text_atomic(os.path.join(config.output, HISTORY_FILE),
                              json.dumps({"arch": config.arch, "epochs": history}, indent=1))
    if world.world_size > 1:
        dist.destroy_process_group()
    return os.path.join(config.output, MODEL_FILE)


def _read_history(folder: str, epochs: int) -> List[Dict[str, Any]]:
    """The first ``epochs`` entries of a run's history.json (and its epoch 0), for a resumed
    run; empty when there is none or it is unreadable."""
    if epochs == 0:
        return []
    try:
        with open(os.path.join(folder, HISTORY_FILE), encoding="utf-8") as handle:
            entries = json.load(handle)["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [entry for entry in entries if entry.get("epoch", epochs + 1) <= epochs]


def _format_metrics(metrics: Dict[str, Dict[str, float]]) -> str:
    return "; ".join(f"{protocol} " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
                     for protocol, values in metrics.items())


def _save(config: TrainConfig, model: nn.Module, optimizers: Optimizers,
          scaler: "torch.amp.GradScaler", epoch: int, metrics: Dict[str, Any],
          initial_metrics: Dict[str, Any]) -> None:
    """Writes model.pt (for export and evaluation) and last.pt (plus optimiser state)."""
    common = dict(arch=config.arch,
                  model_kwargs={**config.model_kwargs, "num_classes": model.num_classes},
                  epoch=epoch, metrics=metrics, config=config.to_dict())
    extra = {"initial_metrics": initial_metrics} if initial_metrics else {}
    save_checkpoint(os.path.join(config.output, MODEL_FILE), model, **common, extra=extra)
    save_checkpoint(os.path.join(config.output, RESUME_FILE), model, **common,
                    extra={**extra, "optimizers": optimizers.state_dict(),
                           "scaler": scaler.state_dict()})
    logger.info("epoch %d: saved %s", epoch, os.path.join(config.output, MODEL_FILE))


def load_resume_checkpoint(path: str, config: TrainConfig,
                           must_match: Sequence[str] = ("arch",)) -> Checkpoint:
    """Loads the checkpoint a ``--resume`` continues from, after checking it belongs to this run.

    Raises:
        ConfigError: The file is missing, or a ``must_match`` setting differs from this run's.
    """
    if not os.path.exists(path):
        raise ConfigError(f"--resume: no {os.path.basename(path)} in {config.output}; start "
                          "without --resume, or point --output at the interrupted run's folder")
    checkpoint = load_checkpoint(path)
    differ = config_differences(checkpoint.config, config, keys=must_match)
    if differ:
        raise ConfigError(f"--resume: {path} was made with other settings "
                          f"({'; '.join(differ)}); resume with the original settings or a new "
                          "--output")
    return checkpoint


def _restore(path: str, config: TrainConfig, model: nn.Module, optimizers: Optimizers,
             scaler: "torch.amp.GradScaler"):
    """Loads last.pt into the run; returns (next epoch, metrics)."""
    checkpoint = load_resume_checkpoint(path, config)
    model.load_state_dict(checkpoint.state_dict)
    optimizers.load_state_dict(checkpoint.extra["optimizers"])
    load_scaler_state(scaler, checkpoint.extra["scaler"], path)
    logger.info("resuming %s after epoch %d", path, checkpoint.epoch)
    return checkpoint.epoch, checkpoint.metrics
