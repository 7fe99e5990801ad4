"""Mixed precision for cvnet-train and cvnet-search: which dtype autocast runs, and the scaler.

On CUDA, ``amp`` (the default) runs the network's matrix products and convolutions in FP16 or,
with ``amp_dtype = "bf16"``, in BF16; the computations that would leave FP16's range run in
FP32 wherever they are (:mod:`cvnet.models.precision`). FP16 needs a gradient scaler (small
gradients would underflow); BF16 has FP32's exponent range and needs none. On the CPU training
runs in FP32.
"""

import contextlib
import logging
from typing import ContextManager, NamedTuple

import torch

from cvnet.core.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``--amp-dtype`` choices -> torch dtypes.
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class AmpSettings(NamedTuple):
    """How one run uses mixed precision.

    Attributes:
        enabled: Whether autocast runs at all (CUDA with ``amp`` on).
        dtype: The autocast dtype (float16 or bfloat16); float32 when disabled.
        name: ``"fp16"``, ``"bf16"`` or ``"fp32"`` (disabled), for logs and messages.
    """

    enabled: bool
    dtype: torch.dtype
    name: str

    @property
    def scaled(self) -> bool:
        """Whether the run needs a gradient scaler (FP16 only)."""
        return self.enabled and self.dtype == torch.float16


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs BF16 natively (CUDA compute capability 8.0+, not emulated)."""
    if device.type != "cuda":
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.4: no emulation argument, and no emulation either
        return bool(torch.cuda.is_bf16_supported())


def resolve_amp(enabled: bool, amp_dtype: str, device: torch.device) -> AmpSettings:
    """The mixed-precision settings of a run on ``device``.

    Args:
        enabled: The ``amp`` setting (``--no-amp`` turns it off).
        amp_dtype: ``"fp16"`` or ``"bf16"`` (``--amp-dtype``).
        device: The training device; autocast is used on CUDA only.

    Raises:
        ConfigError: An unknown ``amp_dtype``, or BF16 on a GPU without native BF16.
    """
    if amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {amp_dtype!r}")
    if not enabled or device.type != "cuda":
        return AmpSettings(False, torch.float32, "fp32")
    if amp_dtype == "bf16" and not bf16_supported(device):
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        raise ConfigError(f"--amp-dtype bf16: {name} (compute capability {major}.{minor}) has no "
                          "native BF16 (it needs compute capability 8.0 or newer, e.g. A100, "
                          "RTX 30xx, H100); use --amp-dtype fp16 or --no-amp")
    return AmpSettings(True, AMP_DTYPES[amp_dtype], amp_dtype)


def autocast(settings: AmpSettings, device: torch.device) -> ContextManager:
    """The autocast context of one forward pass (a no-op context when AMP is off)."""
    if not settings.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=settings.dtype)


def grad_scaler(settings: AmpSettings) -> "torch.amp.GradScaler":
    """A gradient scaler, enabled for FP16 only (a disabled one passes everything through)."""
    return torch.amp.GradScaler("cuda", enabled=settings.scaled)


def load_scaler_state(scaler: "torch.amp.GradScaler", state: dict, path: str) -> None:
    """Restores a scaler's state from a resume checkpoint, across precision changes.

    A run saved without FP16 (FP32, BF16) holds an empty state; resuming it with FP16 starts
    the scaler afresh instead of failing, as does resuming an FP16 run in another precision.
    """
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)
    elif scaler.is_enabled():
        logger.info("%s was saved without FP16 loss scaling; the scaler starts afresh", path)
