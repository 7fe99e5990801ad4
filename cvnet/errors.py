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
