"""Training configuration: the paper's recipe as defaults, a TOML file, command-line overrides.

Precedence: defaults < ``--config file.toml`` < command-line flags. A config file holds the same
keys as :class:`TrainConfig`, e.g.::

    arch = "cvnet"
    data = "data/cvpair/dataset.csv"
    epochs = 350
    batch_size = 64
    [model_kwargs]
    widths = [256, 512, 768]
"""

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from cvnet.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved into every checkpoint.

    Attributes:
        data: Dataset path (generic CSV, VeRi-776 or VehicleID folder).
        data_format: ``auto``, ``csv``, ``veri`` or ``vehicleid``.
        output: Run folder for checkpoints and logs.
        arch: Registered model name.
        model_kwargs: Extra constructor options of the model (not ``num_classes``).
        img_size: Square input size in pixels [paper: 256].
        epochs: Training epochs [paper: 350].
        batch_size: Images per batch on each process, P x K [paper: 64].
        num_instances: K, images per identity in a batch [4].
        lr: SGD learning rate [paper: 0.065].
        momentum: SGD momentum [paper: 0.9].
        weight_decay: Weight decay [paper: 5e-4].
        warmup_epochs: Linear warm-up [paper: 10].
        min_lr_ratio: Learning rate at the warm-up start (and cosine decay end), as a fraction
            of ``lr``.
        lr_schedule: ``step`` (MSINet's: x0.1 at 150/225/300 of 350 epochs, scaled to the run)
            or ``cosine``.
        adam_modules: Module names trained with Adam instead of SGD (paper: "specific
            components"; none by default).
        adam_lr: Adam learning rate [paper: 0.002].
        label_smoothing: Cross-entropy label smoothing [0.1].
        triplet_margin: Batch-hard triplet margin [0.3].
        flip_prob: Horizontal flip probability [0.5].
        pad: Padding before random crop, pixels [10].
        erase_prob: Random erasing probability [0.5].
        amp: Mixed precision (autocast) on CUDA [paper: on, FP16].
        amp_dtype: Its dtype, ``fp16`` (with a gradient scaler) or ``bf16`` (GPUs of compute
            capability 8.0 or newer).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        workers: Data-loading processes per training process.
        eval_every: Evaluate (and checkpoint) every N epochs; the last epoch always.
        protocols: Retrieval protocols evaluated during training; empty = the dataset's
            standard ones (A2G and G2A for cross-view data).
        max_steps_per_epoch: Cap on iterations per epoch (0 = the sampler's full epoch).
        seed: Seed of sampling, augmentation and initialisation.
    """

    data: str = ""
    data_format: str = "auto"
    output: str = "runs/cvnet"
    arch: str = "cvnet"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    img_size: int = 256
    epochs: int = 350
    batch_size: int = 64
    num_instances: int = 4
    lr: float = 0.065
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    min_lr_ratio: float = 0.01
    lr_schedule: str = "step"
    adam_modules: Tuple[str, ...] = ()
    adam_lr: float = 0.002
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    flip_prob: float = 0.5
    pad: int = 10
    erase_prob: float = 0.5
    amp: bool = True
    amp_dtype: str = "fp16"
    device: str = "auto"
    workers: int = 2
    eval_every: int = 10
    protocols: Tuple[str, ...] = ()
    max_steps_per_epoch: int = 0
    seed: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (lists for tuples), safe for ``torch.load(weights_only=True)``."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def config_from_mapping(values: Mapping[str, Any], base: Optional[TrainConfig] = None,
                        source: str = "config", cls: type = TrainConfig) -> TrainConfig:
    """Returns ``base`` (``cls()`` defaults when None) updated with ``values``, type-checked.

    Works for :class:`TrainConfig` and dataclasses extending it (``cvnet-search``'s).

    Raises:
        ConfigError: An unknown key or a value of the wrong type, naming ``source``.
    """
    config = dataclasses.replace(base) if base is not None else cls()
    defaults = type(config)()
    fields = [f.name for f in dataclasses.fields(config)]
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(fields)}")
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, dict) and not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, got {value!r}")
        setattr(config, key, value)
    return config


def config_differences(saved: Mapping[str, Any], config: TrainConfig, *,
                       keys: Optional[Sequence[str]] = None,
                       ignore: Sequence[str] = ()) -> List[str]:
    """What differs between a checkpoint's saved configuration and this run's.

    Args:
        saved: ``checkpoint.config`` (plain types, as :meth:`TrainConfig.to_dict` wrote them).
        config: This run's configuration.
        keys: Compare only these fields (default: all).
        ignore: Fields that may differ (output folder, worker count...).

    Returns:
        ``"lr 0.065 there, 0.5 now"``-style descriptions, sorted by field; empty when the
        settings agree. Fields the saved configuration lacks are not compared, nor are empty
        ``protocols`` here (they mean the dataset's standard ones, which training fills in).
    """
    current = config.to_dict()
    names = sorted(keys if keys is not None else current)
    return [f"{name} {saved[name]!r} there, {current[name]!r} now" for name in names
            if name not in ignore and name in saved and saved[name] != current[name]
            and not (name == "protocols" and not current[name])]


def load_config(path: str, base: Optional[TrainConfig] = None,
                cls: type = TrainConfig) -> TrainConfig:
    """Reads a TOML config file on top of ``base`` (``cls()`` defaults when None).

    Raises:
        ConfigError: Unreadable file, TOML syntax error, or a bad key or value.
    """
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return config_from_mapping(values, base, source=path, cls=cls)
