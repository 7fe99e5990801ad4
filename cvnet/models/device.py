"""Which torch device a run uses: ``auto``, ``cpu`` or ``cuda`` (host side; imports torch)."""

import torch

from cvnet.core.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's GPU under torchrun) when available, else CPU.

    Raises:
        ConfigError: ``cuda`` without a GPU torch can see, or a name other than auto/cpu/cuda.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")
