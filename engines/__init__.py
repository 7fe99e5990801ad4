"""Engines: on-device TensorRT builds and one runtime interface (Python 3.6, no torch).

``open_engine(path, **options)`` picks the backend from the file name and returns a runner (a
context manager: load once, run many)::

    from cvnet.engines import open_engine

    with open_engine("cvnet.plan") as runner:             # TensorRT + pycuda
        embeddings = runner.embed(images, normalize=True)  # (N, D) float32

``.plan``/``.engine`` -> :class:`cvnet.engines.trt_runner.TrtRunner`; ``.onnx`` ->
:class:`cvnet.engines.ort_runner.OrtRunner`; ``.pt``/``.pth`` -> the PyTorch runner, which the
host install registers as a plugin (entry-point group ``cvnet.runners``,
:class:`cvnet.models.runner.TorchRunner`): this package never imports host code, so on the
device a checkpoint is refused with the way to export it. The builder is
:func:`cvnet.engines.builder.build_engine` (``cvnet-build``). Importing this package imports
neither TensorRT, pycuda, ONNX Runtime nor torch.
"""

import importlib
import os
from typing import Any, Optional

from cvnet.core.errors import ConfigError
from cvnet.core.plugins import INSTALL_HINT, RUNNERS, PluginError, load_plugin
from cvnet.engines.base import Runner
from cvnet.engines.errors import MissingDependencyError
from cvnet.engines.metadata import EngineInfo, engine_info
from cvnet.engines.spec import InputSpec

#: File suffix -> (module, runner class) of the device-side runners, imported when opened.
BACKENDS = {
    ".plan": ("cvnet.engines.trt_runner", "TrtRunner"),
    ".engine": ("cvnet.engines.trt_runner", "TrtRunner"),
    ".onnx": ("cvnet.engines.ort_runner", "OrtRunner"),
}
#: File suffix -> what it is, for the suffixes a host plugin opens (``cvnet.runners`` entry
#: points named by the suffix without its dot).
HOST_SUFFIXES = {".pt": "a PyTorch checkpoint", ".pth": "a PyTorch checkpoint"}


def host_runner_fix(path: str) -> str:
    """What to do with a ``.pt`` file where PyTorch is missing: export it, or use the host."""
    return ("On the device, export it to ONNX on the host (cvnet-export {} -o model.onnx), copy "
            "model.onnx and model.onnx.json here and pass the .onnx, or the .plan cvnet-build "
            "makes from it. On the host, use cvnet's host install (make .venv/.installed), which "
            "brings PyTorch and registers its runner.".format(path))


def host_runner_refusal(path: str, why: str) -> str:
    """Why a ``.pt`` file cannot be opened here (``why``), and :func:`host_runner_fix`."""
    return "{}: {} needs torch, which cannot be imported here ({}). {}".format(
        path, HOST_SUFFIXES[_suffix(path)], why, host_runner_fix(path))


def _suffix(path: str) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _host_runner(path: str) -> type:
    """The runner class the host install registers for ``path``'s suffix.

    Raises:
        MissingDependencyError: None is registered (the device, or no host install: the message
            says how to install it), or one is registered and does not load (torch missing or
            broken, or a stale install: the message says which).
    """
    suffix = _suffix(path)
    try:
        runner = load_plugin(RUNNERS, suffix[1:])  # type: Optional[type]
    except PluginError as err:
        if err.stale:
            raise MissingDependencyError("{}: cannot open {}: {}".format(
                path, HOST_SUFFIXES[suffix], err))
        raise MissingDependencyError(host_runner_refusal(path, str(err)))
    if runner is None:
        raise MissingDependencyError(host_runner_refusal(
            path, "no runner for {} files is registered in this install: cvnet's host package "
                  "registers it ({})".format(suffix, INSTALL_HINT)))
    return runner


def runner_class(path: str) -> type:
    """The runner class that opens ``path``, chosen by its suffix.

    Raises:
        ConfigError: The suffix is none cvnet opens.
        MissingDependencyError: A ``.pt`` file where no host runner is installed.
    """
    suffix = _suffix(path)
    if suffix in HOST_SUFFIXES:
        return _host_runner(path)
    if suffix not in BACKENDS:
        known = sorted(set(BACKENDS) | set(HOST_SUFFIXES))
        raise ConfigError("{}: cannot tell the backend from the suffix {!r}; expected one of {} "
                          "(a .plan from cvnet-build, an .onnx from cvnet-export, a .pt "
                          "checkpoint from cvnet-train); rename the file if it is one of "
                          "those".format(path, suffix, ", ".join(known)))
    module, name = BACKENDS[suffix]
    return getattr(importlib.import_module(module), name)


def open_engine(path: str, **options: Any) -> Runner:
    """A runner for a model file, chosen by its suffix; activate it with ``with``.

    Args:
        path: ``.plan``/``.engine`` (TensorRT), ``.onnx`` (ONNX Runtime) or ``.pt``/``.pth``
            (PyTorch checkpoint, host only).
        **options: Passed to the runner: ``normalize``, ``batch_range``, ``metadata`` for all;
            ``device``, ``allow_other_gpu`` for TensorRT; ``providers``, ``threads`` for ONNX
            Runtime; ``arch``, ``model_kwargs``, ``input_size``, ``device`` (``"auto"``,
            ``"cpu"``, ``"cuda"``), ``half``, ``cuda_graphs``, ``threads`` for PyTorch.

    Raises:
        ConfigError: The suffix is none of those.
        EngineLoadError: The file is missing or empty.
        MissingDependencyError: The backend is not installed here (a ``.pt`` on the device).
    """
    return runner_class(path)(path, **options)


__all__ = ["BACKENDS", "EngineInfo", "HOST_SUFFIXES", "InputSpec", "Runner", "engine_info",
           "host_runner_fix", "open_engine", "runner_class"]
