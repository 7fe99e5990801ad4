"""The search loop: alternate weight steps (SGD) and architecture steps (Adam) on split identities.

First-order DARTS as MSINet ran it: the training identities are split in two disjoint halves.
Each iteration first takes one architecture step on a P x K batch of the *architecture* half,
then one weight step on a batch of the *weight* half:

- weight step: the training ReID loss (label-smoothed cross-entropy + batch-hard triplet on the
  global and part features) with SGD and the training schedule, over every parameter except the
  architecture logits;
- architecture step: Adam (lr 0.002, betas (0.5, 0.999), weight decay 1e-3) on the
  architecture logits only, with the batch-hard triplet part of the ReID loss. The ID classifier
  has only seen the weight half's identities, so cross-entropy on the other half is
  meaningless; MSINet uses a separate class memory there, the triplet term needs none.

The search runs on one process, with mixed precision on CUDA like training (``--no-amp``,
``--amp-dtype``): the architecture logits, their softmax and the mixture of the op outputs stay
in FP32 (:class:`~cvnet.models.dfc.FilterMixed`), and FP16 runs scale both losses, each with its
own gradient scaler, so the logits' small gradients do not underflow. A divergence guard
(:mod:`cvnet.training.guard`) stops the search at its first non-finite loss, weight or
optimiser state, or when an FP16 gradient scaler keeps skipping steps, before
``search_last.pt`` is written. After every epoch it logs the softmax weights per position,
writes ``history.json`` and ``weights.png`` and saves ``search_last.pt`` for ``--resume``; at
the end it writes the derived sequence to ``ops.json``.
"""

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_bytes_atomic, write_text_atomic
from cvnet.core.progress import progress_bar
from cvnet.models.threads import configure_torch
from cvnet.core.visualize import weights_heatmap
from cvnet.models.checkpoint import save_checkpoint
from cvnet.models.device import resolve_device
from cvnet.models.dfc import SEARCH_SPACE
from cvnet.search.config import SearchConfig
from cvnet.search.supernet import (ARCH_PARAMETER, arch_parameters, build_supernet, derive_ops,
                                   op_weights, position_names, weights_table)
from cvnet.training.amp import autocast, grad_scaler, load_scaler_state, resolve_amp
from cvnet.training.data import build_train_loader
from cvnet.training.guard import CHECK_EVERY, DivergenceGuard, checkpoints_left, divergence_hint
from cvnet.training.losses import ReIDLoss, batch_hard_triplet_loss
from cvnet.training.optim import Optimizers
from cvnet.training.trainer import load_resume_checkpoint

logger = logging.getLogger(__name__)

OPS_FILE = "ops.json"
HISTORY_FILE = "history.json"
HEATMAP_FILE = "weights.png"
RESUME_FILE = "search_last.pt"
OPS_FORMAT = "cvnet-ops"


class SearchResult(NamedTuple):
    """What a search found.

    Attributes:
        ops: The derived sequence, e.g. ``"GAGGGGGNGEAA"``.
        weights: (positions, 4) final softmax weights, :data:`SEARCH_SPACE` order.
        ops_path: The ``ops.json`` written.
    """

    ops: str
    weights: np.ndarray
    ops_path: str


def split_identities(labels: Sequence[int], ratio: float,
                     seed: int = 0) -> Tuple[List[int], List[int]]:
    """Splits the distinct labels into two disjoint, seeded-random halves.

    Args:
        labels: One identity label per image.
        ratio: Fraction of the identities in the first half (weight steps).
        seed: Seed of the shuffle.

    Returns:
        (weight identities, architecture identities), each sorted.

    Raises:
        ConfigError: ``ratio`` is not in (0, 1), or a half would hold fewer than 2 identities.
    """
    identities = sorted(set(int(label) for label in labels))
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"split ratio must be between 0 and 1 (exclusive), got {ratio}")
    order = np.random.default_rng(seed).permutation(len(identities))
    cut = int(round(ratio * len(identities)))
    first = sorted(identities[i] for i in order[:cut])
    second = sorted(identities[i] for i in order[cut:])
    if len(first) < 2 or len(second) < 2:
        raise ConfigError(f"{len(identities)} training identities split {ratio:g} give halves of "
                          f"{len(first)} and {len(second)}; each half needs at least 2 (P x K "
                          "batches need several): use more identities or another --split-ratio")
    return first, second


def _subset(paths: Sequence[str], labels: Sequence[int],
            identities: Sequence[int]) -> Tuple[List[str], List[int]]:
    """The images of some identities, relabelled 0..len(identities)-1."""
    relabel = {identity: i for i, identity in enumerate(identities)}
    chosen = [(path, relabel[int(label)]) for path, label in zip(paths, labels)
              if int(label) in relabel]
    return [p for p, _ in chosen], [label for _, label in chosen]


def _cycle(loader, epoch: int = 0) -> Any:
    """Yields batches forever from ``epoch`` on, reshuffling each time the loader runs out."""
    while True:
        loader.set_epoch(epoch)
        for batch in loader.loader:
            yield batch
        epoch += 1


def triplet_objective(output, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The architecture steps' loss: batch-hard triplet on the global and the part features."""
    return (batch_hard_triplet_loss(output.global_features.float(), labels, margin)
            + batch_hard_triplet_loss(output.part_features.float(), labels, margin))


def search(config: SearchConfig, paths: Sequence[str], labels: Sequence[int], *,
           resume: bool = False) -> SearchResult:
    """Runs the architecture search and writes ``ops.json`` to ``config.output``.

    Args:
        config: The run's settings; ``arch`` and ``model_kwargs`` give the supernet's layout.
        paths: Training images, checked to decode.
        labels: Identity labels, one per image (any integers).
        resume: Continue from ``search_last.pt`` in the output folder.

    Returns:
        The derived sequence and its weights.

    Raises:
        ConfigError: Bad split, layout or resume state.
    """
    device = resolve_device(config.device)
    configure_torch(torch, adaptive=False)  # decided once: see cvnet.models.threads
    torch.manual_seed(config.seed)
    weight_ids, arch_ids = split_identities(labels, config.split_ratio, config.seed)
    weight_data = build_train_loader(config, *_subset(paths, labels, weight_ids),
                                     pin_memory=device.type == "cuda")
    arch_data = build_train_loader(config, *_subset(paths, labels, arch_ids),
                                   pin_memory=device.type == "cuda", seed=config.seed + 1)
    model_kwargs = {**config.model_kwargs, "num_classes": len(weight_ids)}
    model = build_supernet(config.arch, **model_kwargs).to(device)
    steps = weight_data.steps_per_epoch
    optimizers = Optimizers(model, lr=config.lr, momentum=config.momentum,
                            weight_decay=config.weight_decay, adam_modules=config.adam_modules,
                            adam_lr=config.adam_lr, total_steps=steps * config.epochs,
                            warmup_steps=steps * config.warmup_epochs,
                            min_lr_ratio=config.min_lr_ratio, schedule=config.lr_schedule,
                            exclude=(ARCH_PARAMETER,))
    arch_optimizer = torch.optim.Adam(arch_parameters(model), lr=config.arch_lr,
                                      betas=(config.arch_beta1, 0.999),
                                      weight_decay=config.arch_weight_decay)
    criterion = ReIDLoss(label_smoothing=config.label_smoothing,
                         triplet_margin=config.triplet_margin)
    amp = resolve_amp(config.amp, config.amp_dtype, device)
    scalers = {"weight": grad_scaler(amp), "arch": grad_scaler(amp)}
    make_folders(config.output)
    start_epoch, history = 0, []
    if resume:
        start_epoch, history = _restore(config, model, optimizers, arch_optimizer, scalers)
    guard = DivergenceGuard(
        model, steps_per_epoch=steps, hint=divergence_hint(lr=config.lr, amp=amp.name),
        scalers=list(scalers.values()), optimizers=optimizers.optimizers + [arch_optimizer],
        saved=lambda: checkpoints_left([os.path.join(config.output, RESUME_FILE)],
                                       history[-1]["epoch"] if history else None))
    logger.info("searching %d positions of %s: %d weight identities (%d images), %d "
                "architecture identities (%d images), %d epochs of %d steps on %s, %s",
                len(arch_parameters(model)), config.arch, len(weight_ids),
                len(weight_data.dataset), len(arch_ids), len(arch_data.dataset), config.epochs,
                steps, device, "AMP " + amp.name if amp.enabled else "FP32")

    arch_batches = _cycle(arch_data, start_epoch)  # a resumed run does not replay batches
    for epoch in range(start_epoch, config.epochs):
        weight_data.set_epoch(epoch)
        model.train()
        totals = torch.zeros(2, device=device)  # weight loss, architecture loss: summed here
        progress = progress_bar(steps, f"search {epoch + 1}/{config.epochs}", logger)
        for step, (images, targets) in enumerate(weight_data.loader):
            if step >= steps:
                break
            arch_images, arch_targets = next(arch_batches)
            with autocast(amp, device):
                arch_output = model(arch_images.to(device))
            arch_loss = triplet_objective(arch_output, arch_targets.to(device),
                                          config.triplet_margin)
            arch_optimizer.zero_grad(set_to_none=True)
            scalers["arch"].scale(arch_loss).backward()  # a disabled scaler passes through
            scalers["arch"].step(arch_optimizer)
            scalers["arch"].update()

            with autocast(amp, device):
                output = model(images.to(device))
            loss, _ = criterion(output, targets.to(device))
            guard.observe(epoch, step, arch_loss, loss)  # no GPU wait
            optimizers.zero_grad()
            scalers["weight"].scale(loss).backward()
            optimizers.step(scalers["weight"])
            scalers["weight"].update()
            totals += torch.stack([loss.detach(), arch_loss.detach()])
            progress.update(1)
            if step % CHECK_EVERY == 0:  # reading values waits for the GPU: not every step
                guard.check(epoch, step)
                progress.set_postfix(loss=f"{loss.item():.3f}", arch=f"{arch_loss.item():.3f}")
        progress.close()
        # before anything of this epoch is written (the optimiser state goes into the checkpoint)
        guard.check(epoch, steps - 1, optimizer_state=True)
        weights = op_weights(model)
        mean_losses = (totals / max(1, steps)).tolist()
        history.append({"epoch": epoch + 1, "ops": derive_ops(model),
                        "weights": weights.round(6).tolist(),
                        "weight_loss": round(mean_losses[0], 6),
                        "arch_loss": round(mean_losses[1], 6)})
        logger.info("epoch %d: weight loss %.4f, architecture loss %.4f, ops %s\n%s",
                    epoch + 1, history[-1]["weight_loss"], history[-1]["arch_loss"],
                    history[-1]["ops"], format_weights(weights))
        _write_epoch(config, model, optimizers, arch_optimizer, scalers, history)

    return _write_result(config, model, history, weight_ids, arch_ids)


def format_weights(weights: np.ndarray) -> str:
    """The per-position softmax weights as a Markdown table, heaviest op marked with ``*``."""
    lines = ["| position | " + " | ".join(SEARCH_SPACE) + " | chosen |",
             "|---|" + "---:|" * len(SEARCH_SPACE) + "---|"]
    for name, row in zip(position_names(len(weights)), weights):
        best = int(row.argmax())
        cells = [f"{w:.3f}" + ("*" if i == best else "") for i, w in enumerate(row)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {SEARCH_SPACE[best]} |")
    return "\n".join(lines)


def _heatmap_png(weights: np.ndarray, title: str) -> bytes:
    picture = weights_heatmap(weights, position_names(len(weights)), SEARCH_SPACE, title)
    ok, png = cv2.imencode(".png", picture)
    if not ok:  # pragma: no cover - OpenCV cannot fail to encode a valid uint8 image
        raise RuntimeError("OpenCV could not encode the heatmap as PNG")
    return png.tobytes()


def _write_epoch(config: SearchConfig, model: nn.Module, optimizers: Optimizers,
                 arch_optimizer: torch.optim.Optimizer,
                 scalers: Dict[str, "torch.amp.GradScaler"],
                 history: List[Dict[str, Any]]) -> None:
    """history.json, weights.png and search_last.pt after an epoch, each written atomically."""
    epoch = history[-1]["epoch"]
    write_text_atomic(os.path.join(config.output, HISTORY_FILE),
                      json.dumps({"positions": position_names(len(history[-1]["weights"])),
                                  "ops": list(SEARCH_SPACE), "epochs": history}, indent=1))
    write_bytes_atomic(os.path.join(config.output, HEATMAP_FILE),
                       _heatmap_png(np.array(history[-1]["weights"]),
                                    f"op weights after epoch {epoch}/{config.epochs}"))
    save_checkpoint(os.path.join(config.output, RESUME_FILE), model, arch=config.arch,
                    model_kwargs={**config.model_kwargs, "num_classes": model.num_classes,
                                  "ops": "".join(model.ops)},
                    epoch=epoch, config=config.to_dict(),
                    extra={"optimizers": optimizers.state_dict(),
                           "arch_optimizer": arch_optimizer.state_dict(),
                           "scalers": {k: v.state_dict() for k, v in scalers.items()},
                           "history": json.dumps(history)})


def _restore(config: SearchConfig, model: nn.Module, optimizers: Optimizers,
             arch_optimizer: torch.optim.Optimizer,
             scalers: Dict[str, "torch.amp.GradScaler"]) -> Tuple[int, List[Dict[str, Any]]]:
    path = os.path.join(config.output, RESUME_FILE)
    checkpoint = load_resume_checkpoint(path, config, must_match=("arch", "model_kwargs",
                                                                  "split_ratio", "seed"))
    model.load_state_dict(checkpoint.state_dict)
    optimizers.load_state_dict(checkpoint.extra["optimizers"])
    arch_optimizer.load_state_dict(checkpoint.extra["arch_optimizer"])
    for name, scaler in scalers.items():  # searches saved before AMP have no scaler state
        load_scaler_state(scaler, checkpoint.extra.get("scalers", {}).get(name, {}), path)
    logger.info("resuming %s after epoch %d", path, checkpoint.epoch)
    return checkpoint.epoch, json.loads(checkpoint.extra["history"])


def _write_result(config: SearchConfig, model: nn.Module, history: List[Dict[str, Any]],
                  weight_ids: Sequence[int], arch_ids: Sequence[int]) -> SearchResult:
    weights = op_weights(model)
    ops = derive_ops(model)
    document = {
        "format": OPS_FORMAT, "version": 1, "ops": ops,
        "weights": weights_table(weights), "epochs": len(history),
        "arch": config.arch, "model_kwargs": config.model_kwargs, "data": config.data,
        "weight_identities": len(weight_ids), "architecture_identities": len(arch_ids),
        "config": dataclasses.asdict(config),
    }
    path = write_text_atomic(os.path.join(config.output, OPS_FILE),
                             json.dumps(document, indent=1, default=list))
    logger.info("searched ops %s written to %s", ops, path)
    return SearchResult(ops, weights, path)
