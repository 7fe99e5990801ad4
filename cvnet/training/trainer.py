"""The training loop: P x K batches, AMP on CUDA, DDP under torchrun, atomic checkpoints, resume.

Single process: ``fit(...)`` directly. Several processes (GPUs or CPU ranks on the gloo
backend): launch with ``torchrun --nproc_per_node N -m cvnet.training.cli ...``; each process
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment torchrun sets.
"""

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from cvnet.errors import ConfigError
from cvnet.models import build_model, parse_ops
from cvnet.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cvnet.threads import adapt_torch_threads, configure_torch
from cvnet.training.config import TrainConfig, config_differences
from cvnet.training.data import build_train_loader
from cvnet.training.losses import ReIDLoss
from cvnet.training.optim import Optimizers
from jetson.progress import progress_bar

logger = logging.getLogger(__name__)

#: ``evaluate(model) -> {protocol: {metric: value}}``, run on rank 0 with the eval-mode model.
EvaluateFn = Callable[[nn.Module], Dict[str, Dict[str, float]]]

MODEL_FILE = "model.pt"
_POSTFIX_EVERY = 10  # iterations between progress-bar loss updates
RESUME_FILE = "last.pt"


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's GPU under torchrun) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


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
    configure_torch(torch)
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
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = ReIDLoss(label_smoothing=config.label_smoothing,
                         triplet_margin=config.triplet_margin)
    os.makedirs(config.output, exist_ok=True)
    start_epoch, metrics = 0, {}
    if resume:
        start_epoch, metrics = _restore(os.path.join(config.output, RESUME_FILE), config, model,
                                        optimizers, scaler)
    initial_metrics = {}
    if evaluate is not None and start_epoch == 0 and world.is_main:
        initial_metrics = evaluate(model.eval())  # the untrained baseline, for comparison
        logger.info("before training: %s", _format_metrics(initial_metrics))
    net = DistributedDataParallel(model) if world.world_size > 1 else model
    if world.is_main:
        logger.info("training %s (%d identities, %d images) on %s x%d: %d epochs of %d steps",
                    config.arch, num_classes, len(data.dataset), device, world.world_size,
                    config.epochs, steps_per_epoch)

    for epoch in range(start_epoch, config.epochs):
        data.set_epoch(epoch)
        net.train()
        started, seen = time.perf_counter(), 0
        progress = progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", logger,
                                enabled=world.is_main)
        for step, (images, labels) in enumerate(data.loader):
            if step >= steps_per_epoch:
                break
            adapt_torch_threads()
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                output = net(images)
            loss, parts = criterion(output, labels)
            optimizers.zero_grad()
            scaler.scale(loss).backward()
            optimizers.step(scaler if use_amp else None)
            if use_amp:
                scaler.update()
            seen += images.shape[0] * world.world_size
            progress.update(1)
            # .item() syncs the GPU: not every step
            if world.is_main and step % _POSTFIX_EVERY == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}",
                                     img_s=f"{seen / (time.perf_counter() - started):.1f}")
        progress.close()
        if world.is_main:
            logger.info("epoch %d: loss %.4f (%s), lr %s, %.1f img/s", epoch + 1, loss.item(),
                        ", ".join(f"{k} {v:.3f}" for k, v in parts.items()),
                        ", ".join(f"{lr:.2e}" for lr in optimizers.learning_rates()),
                        seen / (time.perf_counter() - started))
        last_epoch = epoch + 1 == config.epochs
        if (epoch + 1) % max(1, config.eval_every) == 0 or last_epoch:
            if world.is_main:
                if evaluate is not None:
                    metrics = evaluate(model.eval())
                    logger.info("epoch %d: %s", epoch + 1, _format_metrics(metrics))
                _save(config, model, optimizers, scaler, epoch + 1, metrics, initial_metrics)
            if world.world_size > 1:
                dist.barrier()
    if world.world_size > 1:
        dist.destroy_process_group()
    return os.path.join(config.output, MODEL_FILE)


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
    scaler.load_state_dict(checkpoint.extra["scaler"])
    logger.info("resuming %s after epoch %d", path, checkpoint.epoch)
    return checkpoint.epoch, checkpoint.metrics
