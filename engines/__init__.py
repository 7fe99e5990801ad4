"""Engines: on-device TensorRT builds and one runtime interface (Python 3.6, no torch).

``open_engine(path, **options)`` picks the backend from the file name and returns a runner (a
context manager: load once, run many)::

    from cvnet.engines import open_engine

    with open_engine("cvnet.plan") as runner:             # TensorRT + pycuda
        embeddings = runner.embed(images, normalize=True)  # (N, D) float32

``.plan``/``.engine`` -> :class:`cvnet.engines.trt_runner.TrtRunner`; ``.onnx`` ->
:class:`cvnet.engines.ort_runner.OrtRunner`, or with ``backend="openvino"``
:class:`cvnet.engines.ov_runner.OpenVinoRunner` (the optional extra ``cvnet[openvino]``, x86
CPUs; docs/cpu.md); ``.pt``/``.pth`` -> the PyTorch runner, which the
host install registers as a plugin (entry-point group ``cvnet.runners``,
:class:`cvnet.models.runner.TorchRunner`): this package never imports host code, so on the
device a checkpoint is refused with the way to export it. The builder is
:func:`cvnet.engines.builder.build_engine` (``cvnet-build``). Importing this package imports
neither TensorRT, pycuda, ONNX Runtime, OpenVINO nor torch.
"""

import importlib
from typing import Any, Dict, Optional

from cvnet.core.errors import ConfigError
from cvnet.core.plugins import INSTALL_HINT, RUNNERS, PluginError, load_plugin
from cvnet.core.runtimes import DEFAULT_RUNTIME, TORCH_RUNTIMES, model_suffix, suffixes_of
from cvnet.engines.base import Runner
from cvnet.engines.errors import MissingDependencyError
from cvnet.engines.metadata import EngineInfo, engine_info
from cvnet.engines.spec import InputSpec

#: Device-side runtime name -> (module, runner class, the suffixes it opens; from
#: :data:`cvnet.core.runtimes.RUNTIME_SUFFIXES`), imported when a file is opened: the runtimes
#: ``open_engine(path, backend=...)`` and the commands' ``--backend`` may name.
NAMED_BACKENDS = {
    name: (module, runner, suffixes_of(name)) for name, module, runner in (
        ("onnxruntime", "cvnet.engines.ort_runner", "OrtRunner"),
        ("openvino", "cvnet.engines.ov_runner", "OpenVinoRunner"),
        ("tensorrt", "cvnet.engines.trt_runner", "TrtRunner"))
}
#: File suffix -> (module, runner class) of its default device-side runner.
BACKENDS = {suffix: NAMED_BACKENDS[runtime][:2] for suffix, runtime in DEFAULT_RUNTIME.items()
            if runtime in NAMED_BACKENDS}
#: File suffix -> what it is, for the suffixes a host plugin opens (``cvnet.runners`` entry
#: points named by the suffix without its dot): those of the PyTorch runtimes.
HOST_SUFFIXES = {suffix: "a PyTorch checkpoint" for name in TORCH_RUNTIMES
                 for suffix in suffixes_of(name)}


def host_runner_fix(path: str) -> str:
    """What to do with a ``.pt`` file where PyTorch is missing: export it, or use the host."""
    return ("On the device, export it to ONNX on the host (cvnet-export {} -o model.onnx), copy "
            "model.onnx and model.onnx.json here and pass the .onnx, or the .plan cvnet-build "
            "makes from it. On the host, use cvnet's host install (make .venv/.installed), which "
            "brings PyTorch and registers its runner.".format(path))


def host_runner_refusal(path: str, why: str) -> str:
    """Why a ``.pt`` file cannot be opened here (``why``), and :func:`host_runner_fix`."""
    return "{}: {} needs torch, which cannot be imported here ({}). {}".format(
        path, HOST_SUFFIXES[model_suffix(path)], why, host_runner_fix(path))


def _host_runner(path: str) -> type:
    """The runner class the host install registers for ``path``'s suffix.

    Raises:
        MissingDependencyError: None is registered (the device, or no host install: the message
            says how to install it), or one is registered and does not load (torch missing or
            broken, or a stale install: the message says which).
    """
    suffix = model_suffix(path)
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


def runner_class(path: str, backend: Optional[str] = None) -> type:
    """The runner class that opens ``path``: ``backend``'s, else the one its suffix names.

    Args:
        path: The model file.
        backend: A name of :data:`NAMED_BACKENDS` (``"openvino"`` for an ``.onnx`` file), or
            None for the suffix's default.

    Raises:
        ConfigError: The suffix is none cvnet opens, or ``backend`` is unknown or does not open
            that suffix.
        MissingDependencyError: A ``.pt`` file where no host runner is installed.
    """
    suffix = model_suffix(path)
    if backend is not None:
        if backend not in NAMED_BACKENDS:
            raise ConfigError("unknown backend {!r}; expected one of {}".format(
                backend, ", ".join(sorted(NAMED_BACKENDS))))
        module, name, suffixes = NAMED_BACKENDS[backend]
        if suffix not in suffixes:
            raise ConfigError("{}: the {} backend opens {} files, not {!r}; drop the backend "
                              "option or pass a {} file".format(path, backend,
                                                                "/".join(suffixes), suffix,
                                                                suffixes[0]))
        return getattr(importlib.import_module(module), name)
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


def backend_options(path: str, *, backend: Optional[str] = None, precision: str = "auto",
                    threads: Optional[int] = None) -> Dict[str, Any]:
    """:func:`open_engine`'s options from the commands' ``--backend``, ``--precision`` and
    ``--threads`` (cvnet-eval, cvnet-embed).

    ``precision`` is the OpenVINO runner's (``fp32``, ``bf16``, ``auto``); the other runtimes
    compute what their file says, so only ``auto`` and ``fp32`` are accepted for them.

    Raises:
        ConfigError: ``backend`` does not open ``path``, or a precision its runtime does not
            choose (``bf16`` without ``--backend openvino``).
    """
    runner = runner_class(path, backend)  # refuses a backend that does not open the suffix
    options = {}  # type: Dict[str, Any]
    if backend is not None:
        options["backend"] = backend
    if backend == "openvino":
        options["precision"] = precision
    elif precision not in ("auto", "fp32"):
        raise ConfigError("--precision {} is OpenVINO's choice: add --backend openvino (for an "
                          ".onnx file), or leave --precision out: {} runs at the precision the "
                          "file was exported or built with".format(precision, runner.backend))
    if threads and runner.backend != "tensorrt":  # a GPU engine has no CPU threads to set
        options["threads"] = threads
    return options


def open_engine(path: str, backend: Optional[str] = None, **options: Any) -> Runner:
    """A runner for a model file, chosen by its suffix or ``backend``; activate it with ``with``.

    Args:
        path: ``.plan``/``.engine`` (TensorRT), ``.onnx`` (ONNX Runtime, or OpenVINO with
            ``backend="openvino"``) or ``.pt``/``.pth`` (PyTorch checkpoint, host only).
        backend: None for the suffix's runtime, or a name of :data:`NAMED_BACKENDS`.
        **options: Passed to the runner: ``normalize``, ``batch_range``, ``metadata`` for all;
            ``device``, ``allow_other_gpu`` for TensorRT; ``providers``, ``threads`` for ONNX
            Runtime; ``precision`` (``"fp32"``, ``"bf16"``, ``"auto"``), ``threads``,
            ``check_agreement`` for OpenVINO; ``arch``, ``model_kwargs``, ``input_size``,
            ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``), ``half``, ``cuda_graphs``,
            ``threads`` for PyTorch.

    Raises:
        ConfigError: The suffix is none of those, or ``backend`` does not open it.
        EngineLoadError: The file is missing or empty.
        MissingDependencyError: The backend is not installed here (a ``.pt`` on the device).
        PrecisionRefusedError: OpenVINO bf16 where the agreement check failed or never ran.
    """
    return runner_class(path, backend)(path, **options)


__all__ = ["BACKENDS", "EngineInfo", "HOST_SUFFIXES", "InputSpec", "NAMED_BACKENDS", "Runner",
           "backend_options", "engine_info", "host_runner_fix", "open_engine", "runner_class"]
