"""cvnet checkpoints: save, load safely, and rebuild the model they belong to.

A cvnet checkpoint is what :func:`save_checkpoint` writes with ``torch.save``: a dict holding only
types ``torch.load(weights_only=True)`` accepts (tensors, dicts, lists, tuples, str, int, float,
bool, None)::

    {"format": "cvnet-checkpoint", "version": 1, "arch": "cvnet", "model_kwargs": {...},
     "state_dict": {name: tensor}, "epoch": 120, "metrics": {"mAP": 0.41}, "config": {...}}

:func:`model_from_checkpoint` also takes a plain ``state_dict`` (then the architecture must be
named). Files are only ever read with ``weights_only=True``: a file that needs full unpickling is
refused with an explanation, because unpickling can run arbitrary code.

ID classifiers: a training checkpoint holds ``global_classifier.*`` and ``part_classifier.*``.
They are loaded, not dropped: the model is built with ``num_classes`` from ``model_kwargs`` or,
for a plain state_dict, from the classifier's shape, and the strict load checks every key. The
eval-mode forward never touches them, so the exported graph does not contain them either; a
model built without classifiers (``num_classes=0``) reports them as unexpected keys.

Example:
    >>> save_checkpoint("runs/best.pt", model, arch="cvnet", model_kwargs={"num_classes": 576},
    ...                 epoch=120, metrics={"mAP": 0.41})
    >>> model, checkpoint = model_from_checkpoint("runs/best.pt")   # eval mode
"""

import hashlib
import io
import logging
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from cvnet.core.errors import CheckpointError, ConfigError
from cvnet.core.fileio import atomic_path, sha256_bytes
from cvnet.core.preprocess import DEFAULT_SIZE
from cvnet.models.registry import build_model, list_models

logger = logging.getLogger(__name__)

FORMAT = "cvnet-checkpoint"
VERSION = 1
_CLASSIFIER_KEY = "global_classifier.weight"
_SAFE_SCALARS = (str, int, float, bool, type(None))
_HOW_TO_RESAVE = (
    "If you trust the file, re-save its weights as a plain state_dict in Python: "
    "obj = torch.load(path, weights_only=False); "
    "torch.save(obj.state_dict() if hasattr(obj, 'state_dict') else obj['state_dict'], "
    "'weights.pt'); then export weights.pt with --arch NAME")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The file it was read from.
        sha256: SHA-256 of the file.
        state_dict: Parameter and buffer name -> tensor (on the CPU).
        arch: Registered model name, or None for a plain state_dict.
        model_kwargs: Constructor options the model was built with.
        epoch: Training epoch, if recorded.
        metrics: Metrics recorded at saving time.
        config: The training configuration, if recorded.
        plain_state_dict: True when the file held a bare state_dict, not a cvnet checkpoint.
        extra: Other state saved with the weights (cvnet-train keeps its optimiser state here
            for ``--resume``).
    """

    path: str
    sha256: str
    state_dict: Dict[str, torch.Tensor]
    arch: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    epoch: Optional[int] = None
    metrics: Dict[str, Any] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)
    plain_state_dict: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)


def _check_safe(value: Any, where: str) -> None:
    """Raises unless ``value`` holds only types ``torch.load(weights_only=True)`` reads back."""
    # Exact types: subclasses (numpy.float64 is a float, a namedtuple a tuple) pickle as globals.
    if type(value) in _SAFE_SCALARS or isinstance(value, torch.Tensor):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_safe(item, f"{where}[{i}]")
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ConfigError(f"{where} has a key of type {type(key).__name__}; checkpoint "
                                  "dict keys must be str or int")
            _check_safe(item, f"{where}[{key!r}]")
        return
    raise ConfigError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which "
                      "torch.load(weights_only=True) refuses; convert it to plain Python types "
                      "(str, int, float, bool, None, list, dict) or a tensor")


def _non_finite(value: Any, where: str) -> List[str]:
    """Where the floating-point tensors in a (nested) checkpoint value hold NaN or inf."""
    if isinstance(value, torch.Tensor):
        finite = not value.is_floating_point() or bool(torch.isfinite(value).all())
        return [] if finite else [where]
    if isinstance(value, (list, tuple)):
        return [name for i, item in enumerate(value) for name in _non_finite(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [name for key, item in value.items()
                for name in _non_finite(item, f"{where}[{key!r}]")]
    return []


def save_checkpoint(path: str, model: nn.Module, *, arch: str,
                    model_kwargs: Optional[Mapping[str, Any]] = None, epoch: Optional[int] = None,
                    metrics: Optional[Mapping[str, Any]] = None,
                    config: Optional[Mapping[str, Any]] = None,
                    extra: Optional[Mapping[str, Any]] = None) -> str:
    """Writes a cvnet checkpoint atomically.

    Args:
        path: Output file, conventionally ``*.pt``.
        model: The model; its ``state_dict`` is saved with tensors moved to the CPU.
        arch: Registered name the model was built with (``build_model(arch, **model_kwargs)``).
        model_kwargs: The constructor options it was built with, e.g. ``{"num_classes": 576}``.
        epoch: Training epoch the weights belong to.
        metrics: Evaluation figures, e.g. ``{"mAP": 0.41, "rank1": 0.62}``.
        config: The training configuration as plain types.
        extra: Other state to keep with the weights (plain types and tensors), e.g. optimiser
            state for resuming.

    Returns:
        The absolute path written.

    Raises:
        ConfigError: ``arch`` is not registered, or a value is of a type that
            ``torch.load(weights_only=True)`` cannot read back.
        CheckpointError: A weight, buffer or saved tensor holds NaN or inf (a diverged run);
            nothing is written, so the file already at ``path`` stays as it was.
        OutputPathError: The file cannot be written.
    """
    if arch not in list_models():
        raise ConfigError(f"arch {arch!r} is not a registered model; known: "
                          f"{', '.join(list_models())}")
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "model_kwargs": dict(model_kwargs or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "metrics": dict(metrics or {}),
        "config": dict(config or {}),
        "extra": dict(extra or {}),
    }
    for key in ("model_kwargs", "epoch", "metrics", "config", "extra"):
        _check_safe(checkpoint[key], key)
    bad = _non_finite(checkpoint["state_dict"], "state_dict") + _non_finite(checkpoint["extra"],
                                                                           "extra")
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"refusing to write {path}: {len(bad)} tensor(s) hold NaN or inf "
                              f"({', '.join(bad[:5])}{more}), so the model diverged; the file "
                              "already there is left as it was")
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return os.path.abspath(path)


def _not_a_checkpoint(path: str, head: bytes) -> CheckpointError:
    """The error for a file that torch.save did not write, saying what it seems to be."""
    if path.lower().endswith(".onnx") or head[:1] == b"\x08":
        kind = ("it looks like an ONNX model; cvnet-export takes the PyTorch checkpoint the model "
                "was trained into, not an exported graph")
    else:
        try:
            head.decode("utf-8")
            kind = "it is a text file"
        except UnicodeDecodeError:
            kind = "it starts with neither the zip nor the pickle signature torch.save writes"
    return CheckpointError(f"{path}: not a PyTorch checkpoint ({kind}); pass the .pt file "
                           "written by cvnet-train or torch.save(model.state_dict(), path)")


def _torch_load(path: str, data: bytes) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError."""
    if data[:4] != b"PK\x03\x04" and not (data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05"):
        raise _not_a_checkpoint(path, data[:512])
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            raise CheckpointError(
                f"{path}: refused: it was saved with arbitrary Python objects (it contains "
                f"{found.group(1)}), and torch.load(weights_only=True), the only way cvnet loads "
                "files, will not unpickle them because that can run arbitrary code. "
                + _HOW_TO_RESAVE) from None
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({text.splitlines()[0]}"
                              f" ...); re-save it with torch.save(state_dict, path)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason}); copy or save "
                              "it again") from None


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def load_checkpoint(path: str) -> Checkpoint:
    """Reads a cvnet checkpoint or a plain state_dict with ``torch.load(weights_only=True)``.

    Args:
        path: The ``.pt`` file.

    Raises:
        CheckpointError: The file is missing, empty, not a checkpoint (text, ONNX, truncated),
            needs full unpickling, or holds neither a cvnet checkpoint nor a state_dict; the
            message says which and how to fix it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file; check the checkpoint path")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder; pass the checkpoint file inside it")
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise CheckpointError(f"{path}: file is empty (0 bytes); the save was interrupted or the "
                              "copy failed")
    obj = _torch_load(path, data)
    digest = sha256_bytes(data)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _checkpoint_from_dict(path, digest, obj)
    if _is_state_dict(obj):
        return Checkpoint(path=path, sha256=digest, state_dict=dict(obj), plain_state_dict=True)
    what = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
            else f"a {type(obj).__name__}")
    raise CheckpointError(f"{path}: holds {what}, neither a cvnet checkpoint nor a state_dict "
                          "(name -> tensor); save one with cvnet.models.checkpoint.save_checkpoint"
                          " or torch.save(model.state_dict(), path)")


def _checkpoint_from_dict(path: str, digest: str, obj: Dict[str, Any]) -> Checkpoint:
    version = obj.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: cvnet checkpoint version {version!r}; this cvnet reads "
                              f"version {VERSION} and older; update cvnet")
    missing = [k for k in ("arch", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: cvnet checkpoint without {', '.join(missing)}; save it "
                              "again with save_checkpoint")
    if not _is_state_dict(obj["state_dict"]):
        raise CheckpointError(f"{path}: the checkpoint's state_dict is not a name -> tensor dict")
    return Checkpoint(path=path, sha256=digest, state_dict=dict(obj["state_dict"]),
                      arch=obj["arch"], model_kwargs=dict(obj.get("model_kwargs") or {}),
                      epoch=obj.get("epoch"), metrics=dict(obj.get("metrics") or {}),
                      config=dict(obj.get("config") or {}),
                      extra=dict(obj.get("extra") or {}))


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, torch.Tensor]
                        ) -> Tuple[List[str], List[str], List[str]]:
    """Compares a state_dict with a model's.

    Returns:
        (missing keys, unexpected keys, ``"name: checkpoint (a, b) vs model (c, d)"`` for
        shape mismatches), each sorted.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model "
                    f"{tuple(expected[k].shape)}" for k in set(expected) & set(state_dict)
                    if state_dict[k].shape != expected[k].shape)
    return missing, unexpected, shapes


def _listing(label: str, keys: List[str], limit: int = 12) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{len(keys)} {label}: {', '.join(keys[:limit])}{more}"


def _mismatch_message(path: str, arch: str, missing: List[str], unexpected: List[str],
                      shapes: List[str]) -> str:
    parts = [f"{path}: the weights do not fit {arch!r}"]
    if missing:
        parts.append(_listing("missing keys", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if shapes:
        parts.append(_listing("shape mismatches", shapes))
    hint = "check --arch and the model options the weights were trained with"
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hint = ("the keys start with 'module.' (saved from DataParallel): save "
                "model.module.state_dict() instead")
    return "; ".join(parts) + "; " + hint


def model_from_checkpoint(path: str, *, arch: Optional[str] = None,
                          model_kwargs: Optional[Mapping[str, Any]] = None,
                          strict: bool = True) -> Tuple[nn.Module, Checkpoint]:
    """Loads a checkpoint and builds the model it belongs to, in eval mode.

    Args:
        path: A cvnet checkpoint or a plain state_dict.
        arch: Registered model name; required for a plain state_dict, and must agree with a
            cvnet checkpoint's own.
        model_kwargs: Constructor options; override the checkpoint's. ``num_classes`` defaults
            to the number of classifier rows in the weights.
        strict: Fail on missing, unexpected or mis-shaped keys. With False, the keys that fit are
            loaded and the rest are logged as a warning.

    Returns:
        The model (eval mode, CPU) and the loaded checkpoint.

    Raises:
        CheckpointError: See :func:`load_checkpoint`; the weights do not fit the architecture
            (listing missing and unexpected keys and shape mismatches); a plain state_dict
            without ``arch``.
        ConfigError: ``arch`` is unknown, disagrees with the checkpoint's, or the options are
            invalid for the model.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint.plain_state_dict and arch is None:
        raise CheckpointError(f"{path} is a plain state_dict, which does not say which "
                              "architecture it belongs to; name it with --arch (one of: "
                              f"{', '.join(list_models())})")
    if arch is not None and checkpoint.arch is not None and arch != checkpoint.arch:
        raise ConfigError(f"{path} was saved for arch {checkpoint.arch!r} but {arch!r} was asked "
                          "for; leave --arch out to use the checkpoint's")
    arch = arch or checkpoint.arch
    if arch not in list_models():
        raise ConfigError(f"unknown arch {arch!r}; known models: {', '.join(list_models())}")
    kwargs = {**checkpoint.model_kwargs, **dict(model_kwargs or {})}
    classifier = checkpoint.state_dict.get(_CLASSIFIER_KEY)
    if "num_classes" not in kwargs and classifier is not None:
        kwargs["num_classes"] = int(classifier.shape[0])
    try:
        model = build_model(arch, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model options {kwargs} do not fit {arch!r}: {err}") from None
    missing, unexpected, shapes = state_dict_mismatch(model, checkpoint.state_dict)
    if missing or unexpected or shapes:
        message = _mismatch_message(path, arch, missing, unexpected, shapes)
        if strict:
            raise CheckpointError(message)
        logger.warning("%s; loading only the keys that fit (strict=False)", message)
        expected = model.state_dict()
        fitting = {k: v for k, v in checkpoint.state_dict.items()
                   if k in expected and v.shape == expected[k].shape}
        model.load_state_dict(fitting, strict=False)
    else:
        model.load_state_dict(checkpoint.state_dict)
    checkpoint.arch, checkpoint.model_kwargs = arch, kwargs
    return model.eval(), checkpoint


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state_dict's names, dtypes, shapes and bytes, in name order.

    Identifies the weights independently of the file they were saved in.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel()
                      else b"")
    return digest.hexdigest()


def trained_input_size(config: Mapping[str, Any]) -> Optional[Tuple[int, int]]:
    """(height, width) in pixels a cvnet-train checkpoint was trained at (its config's
    ``img_size``: one int or a pair), or None when it records none (a plain state_dict)."""
    size = config.get("img_size")
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return None


def resolve_input_size(requested: Optional[Tuple[int, int]], trained: Optional[Tuple[int, int]],
                       checkpoint: Optional[str]) -> Tuple[int, int]:
    """The input size to run or export a checkpoint at: ``--input-size`` if given, else the size
    it was trained at, else 256x256 (:data:`cvnet.core.preprocess.DEFAULT_SIZE`).

    The one rule of cvnet-export and the ``.pt`` runner (cvnet-eval, cvnet-embed, cvnet-bench).
    A requested size other than the trained one is allowed, and said out loud: crops are then
    embedded at a size the weights never saw, and accuracy usually drops.

    Args:
        requested: (height, width) in pixels the user asked for, or None.
        trained: What :func:`trained_input_size` found, or None.
        checkpoint: The file, for the messages.
    """
    if requested is None:
        size = trained or DEFAULT_SIZE
        logger.info("input size %dx%d: %s", size[0], size[1],
                    f"the size {checkpoint} was trained at" if trained else
                    "the default (no training size recorded; pass --input-size to choose)")
        return tuple(size)
    if trained is not None and tuple(requested) != tuple(trained):
        logger.warning("--input-size %dx%d differs from the %dx%d %s was trained at: crops will "
                       "be embedded at a size the weights never saw, and accuracy usually drops "
                       "(compare with cvnet-eval at both sizes); leave --input-size out to use "
                       "%dx%d", requested[0], requested[1], trained[0], trained[1], checkpoint,
                       trained[0], trained[1])
    return tuple(requested)
