"""The exceptions of the engine builder and the runtimes (torch-free, Python 3.6).

They extend :class:`cvnet.core.errors.CVNetError`; every message says what was wrong, what was
expected and how to fix it.
"""

from cvnet.core.errors import CVNetError


class EngineError(CVNetError):
    """Base class of the builder's and the runtimes' errors."""


class MissingDependencyError(EngineError, ImportError):
    """An optional package (TensorRT, pycuda, ONNX Runtime, PyTorch) is not importable here."""


class EngineLoadError(EngineError):
    """A model file is missing, truncated or corrupt, or the backend refuses it."""


class EngineCompatibilityError(EngineLoadError):
    """A TensorRT plan was built for another TensorRT version or GPU: rebuild it here."""


class EngineBuildError(EngineError):
    """TensorRT could not parse the ONNX graph or build an engine from it."""


class EngineInputError(EngineError, ValueError):
    """Images or a batch passed to a runner do not have the type, shape or dtype it expects."""
