"""The exceptions cvnet raises for problems a user can fix (torch-free, Python 3.6).

Every message says what was wrong, what was expected and how to fix it.
"""


class CVNetError(Exception):
    """Base class of every error cvnet raises on purpose."""


class ConfigError(CVNetError, ValueError):
    """An argument or configuration value is invalid (unknown model name, bad op sequence...)."""


class UnsupportedOperatorError(CVNetError):
    """An ONNX graph contains operators the target TensorRT version cannot parse."""


class DatasetError(CVNetError, ValueError):
    """A dataset is missing, malformed or empty (bad CSV columns, unknown split, empty query...)."""


class MetadataError(CVNetError):
    """An artefact sidecar (``cvnet.onnx.json``...) is missing, unreadable or invalid."""


class CheckpointError(CVNetError):
    """A checkpoint file is missing, not a checkpoint, unsafe to load or does not fit the model."""


class OutputPathError(CVNetError, OSError):
    """An output file cannot be written where it was asked for (also an OSError)."""


class ExportError(CVNetError):
    """A model could not be exported (exporter failure, bad export options)."""


class VerificationError(ExportError):
    """An exported graph does not compute what the PyTorch model computes, within tolerance."""


class DivergenceError(CVNetError):
    """Training produced a non-finite loss, weight or BatchNorm statistic and was stopped."""
