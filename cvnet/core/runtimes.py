"""The runtimes that run a model file, and the file suffixes each opens: one table for
:func:`cvnet.engines.open_engine`, the commands' ``--backend`` (docs/cli.md) and ``cvnet-bench``.

Device-side (Python 3.6, no torch); it names runtimes and suffixes only: which module implements
each runner is :mod:`cvnet.engines`'s business.
"""

import os
from collections import OrderedDict
from typing import Optional, Tuple

#: Runtime name (the ``--backend`` names) -> the file suffixes it opens, lower case. ``torch`` is
#: the host's PyTorch runner as every command uses it (CUDA graphs, channels-last and cuDNN
#: autotuning on a GPU; eager on the CPU), ``torch-eager`` plain eager PyTorch on any device (the
#: reference the graphs are measured against); ``openvino`` runs ``.onnx`` files on x86 CPUs
#: (``cvnet[openvino]``).
RUNTIME_SUFFIXES = OrderedDict([
    ("torch", (".pt", ".pth")),
    ("torch-eager", (".pt", ".pth")),
    ("onnxruntime", (".onnx",)),
    ("openvino", (".onnx",)),
    ("tensorrt", (".plan", ".engine")),
])
#: The runtimes that run a PyTorch checkpoint (host install only).
TORCH_RUNTIMES = ("torch", "torch-eager")
#: File suffix -> the runtime that opens it unless a command's ``--backend`` says otherwise.
DEFAULT_RUNTIME = OrderedDict([(".plan", "tensorrt"), (".engine", "tensorrt"),
                               (".onnx", "onnxruntime"), (".pt", "torch"), (".pth", "torch")])


def model_suffix(path: str) -> str:
    """``"cvnet.ONNX"`` -> ``".onnx"``: a model file's suffix, lower case."""
    return os.path.splitext(os.fspath(path))[1].lower()


def default_runtime(path: str) -> Optional[str]:
    """The runtime that opens ``path`` by its suffix (any case); None for a suffix none opens."""
    return DEFAULT_RUNTIME.get(model_suffix(path))


def opens(runtime: str, path: str) -> bool:
    """Whether ``runtime`` (a :data:`RUNTIME_SUFFIXES` name) opens ``path``'s suffix."""
    return model_suffix(path) in RUNTIME_SUFFIXES.get(runtime, ())


def suffixes_of(runtime: str) -> Tuple[str, ...]:
    """The suffixes ``runtime`` opens (empty for an unknown name)."""
    return tuple(RUNTIME_SUFFIXES.get(runtime, ()))
