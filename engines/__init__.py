"""Engines: on-device TensorRT builds and one runtime interface (Python 3.6, no torch).

``open_engine(path, **options)`` picks the backend from the file name and returns a runner (a
context manager: load once, run many)::

    from cvnet.engines import open_engine

    with open_engine("cvnet.plan") as runner:             # TensorRT + pycuda
        embeddings = runner.embed(images, normalize=True)  # (N, D) float32

``.plan``/``.engine`` -> :class:`cvnet.engines.trt_runner.TrtRunner`; ``.onnx`` ->
:class:`cvnet.engines.ort_runner.OrtRunner`; ``.pt`` -> :class:`cvnet.engines.torch_runner.TorchRunner`
(host only). The builder is :func:`cvnet.engines.builder.build_engine` (``cvnet-build``). Importing
this package imports neither TensorRT, pycuda, ONNX Runtime nor torch.
"""

import os
from typing import Any

from cvnet.core.errors import ConfigError
from cvnet.engines.base import InputSpec, Runner
from cvnet.engines.metadata import EngineInfo, engine_info

#: File suffix -> (module, runner class), imported when a file of that kind is opened.
BACKENDS = {
    ".plan": ("cvnet.engines.trt_runner", "TrtRunner"),
    ".engine": ("cvnet.engines.trt_runner", "TrtRunner"),
    ".onnx": ("cvnet.engines.ort_runner", "OrtRunner"),
    ".pt": ("cvnet.engines.torch_runner", "TorchRunner"),
    ".pth": ("cvnet.engines.torch_runner", "TorchRunner"),
}


def open_engine(path: str, **options: Any) -> Runner:
    """A runner for a model file, chosen by its suffix; activate it with ``with``.

    Args:
        path: ``.plan``/``.engine`` (TensorRT), ``.onnx`` (ONNX Runtime) or ``.pt``/``.pth``
            (PyTorch checkpoint, host only).
        **options: Passed to the runner: ``normalize``, ``batch_range``, ``metadata`` for all;
            ``device``, ``allow_other_gpu`` for TensorRT; ``providers``, ``threads`` for ONNX
            Runtime; ``arch``, ``model_kwargs``, ``input_size``, ``device`` for PyTorch.

    Raises:
        ConfigError: The suffix is none of those.
        EngineLoadError: The file is missing or empty.
    """
    import importlib

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in BACKENDS:
        raise ConfigError("{}: cannot tell the backend from the suffix {!r}; expected one of {} "
                          "(a .plan from cvnet-build, an .onnx from cvnet-export, a .pt "
                          "checkpoint from cvnet-train); rename the file if it is one of "
                          "those".format(path, suffix, ", ".join(sorted(BACKENDS))))
    module, name = BACKENDS[suffix]
    return getattr(importlib.import_module(module), name)(path, **options)


__all__ = ["BACKENDS", "EngineInfo", "InputSpec", "Runner", "engine_info", "open_engine"]
