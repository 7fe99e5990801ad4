"""``python3 -m cvnet.jetson self-check``: what this container sees and lacks, with the fix.

The facts come from the machine probe (:mod:`cvnet.engines.machine`); this module judges them:
what a Jetson (or any machine) needs to run cvnet's device commands, and how to fix what is
missing.

The most common Jetson failure is a container that cannot see TensorRT: on JetPack 4 the NVIDIA
container runtime mounts CUDA, cuDNN and TensorRT (with its Python 3.6 bindings) from the host,
so a container started without ``--runtime nvidia`` has none of them.
"""

import importlib
import os
import platform
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from cvnet.engines.machine import (JETPACK_OF_L4T, OK, TEGRA_RELEASE, UNUSABLE, Probe,
                                   cuda_version, gpu_description, jetson_model, l4t_release,
                                   power_mode, probe)

#: What ``--require`` may ask to be present (see :func:`gather`).
REQUIREMENTS = ("auto", "tensorrt", "onnxruntime", "none")

FIX_TENSORRT = ("TensorRT is not importable. On a Jetson (JetPack 4) the NVIDIA runtime mounts "
                "it from the host: start the container with `docker run --runtime nvidia ...` "
                "and check that the host has it (`dpkg -l | grep nvinfer`, JetPack 4.6.x). "
                "Elsewhere install the TensorRT Python wheel matching the GPU driver.")
FIX_PYCUDA = ("pycuda is not importable: build it on the device with nvcc on PATH: "
              "`PATH=/usr/local/cuda/bin:$PATH pip3 install 'pycuda==2022.1'` (the last release "
              "for Python 3.6); Dockerfile.l4t does this when built with the nvidia default "
              "runtime.")
FIX_ORT = ("onnxruntime is not importable: `pip3 install onnxruntime==1.10.0` (CPU, the last "
           "cp36 aarch64 wheel) or the Jetson Zoo onnxruntime-gpu 1.11 wheel.")
FIX_OPENBLAS = ("OPENBLAS_CORETYPE is not set: numpy 1.19.5 dies with 'Illegal instruction' on "
                "Jetson; `export OPENBLAS_CORETYPE=ARMV8` (Dockerfile.l4t sets it).")


class Check(NamedTuple):
    """One line of the report: a name, what was found, and the fix when it is a problem."""

    name: str
    value: str
    problem: Optional[str] = None


def _problem(found: Probe, fix: str) -> str:
    """The fix for a package that is not usable; an unusable one says it is installed but broken."""
    if found.status == UNUSABLE:
        return ("it is installed but fails to import, {}: a broken install (often a CUDA "
                "library it cannot find). {}".format(found.text, fix))
    return fix


def gather(require: str = "auto", importer: Callable[[str], Any] = importlib.import_module
           ) -> Tuple[List[Check], bool]:
    """Collects the report.

    A package counts as present only when it imports: one that is installed but raises on
    import (:data:`cvnet.engines.machine.UNUSABLE`) fails a requirement as a missing one does.

    Args:
        require: ``"tensorrt"`` (TensorRT + pycuda), ``"onnxruntime"``, ``"none"``, or
            ``"auto"``: TensorRT on a Jetson, otherwise any one backend.
        importer: Imports a package by name (a test's stand-in).

    Returns:
        ``(checks, on_jetson)``.
    """
    l4t = l4t_release()
    on_jetson = l4t is not None
    if require == "auto":
        require = "tensorrt" if on_jetson else "any"
    checks = [Check("L4T", l4t or "not a Jetson ({} missing)".format(TEGRA_RELEASE)),
              Check("JetPack", JETPACK_OF_L4T.get(l4t, "unknown") if l4t else "n/a"),
              Check("board", jetson_model() or "n/a")]
    modules = ("tensorrt", "pycuda", "onnxruntime", "numpy", "cv2")
    found = {module: probe(module, importer) for module in modules}  # type: Dict[str, Probe]
    failed = {module: result.status != OK for module, result in found.items()}
    checks.append(Check("TensorRT", found["tensorrt"].text,
                        _problem(found["tensorrt"], FIX_TENSORRT)
                        if require == "tensorrt" and failed["tensorrt"] else None))
    checks.append(Check("pycuda", found["pycuda"].text,
                        _problem(found["pycuda"], FIX_PYCUDA)
                        if require == "tensorrt" and failed["pycuda"] else None))
    checks.append(Check("CUDA", cuda_version()))
    checks.append(Check("Python", platform.python_version()))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    checks.append(Check("numpy", "{} (OPENBLAS_CORETYPE={})".format(found["numpy"].text,
                                                                    coretype),
                        FIX_OPENBLAS if on_jetson and not coretype else None))
    checks.append(Check("OpenCV", found["cv2"].text))
    ort_problem = None
    if require == "onnxruntime" and failed["onnxruntime"]:
        ort_problem = _problem(found["onnxruntime"], FIX_ORT)
    if require == "any" and failed["onnxruntime"] and failed["tensorrt"]:
        ort_problem = "no backend: neither TensorRT nor onnxruntime imports. " + _problem(
            found["onnxruntime"], FIX_ORT)
    checks.append(Check("onnxruntime", found["onnxruntime"].text, ort_problem))
    checks.append(Check("GPU", gpu_description()))
    checks.append(Check("power mode", power_mode() or "n/a (no nvpmodel)"))
    return checks, on_jetson


def report(checks: List[Check]) -> str:
    """The report as aligned text; problems follow as ``FIX:`` lines."""
    width = max(len(check.name) for check in checks)
    lines = ["{}  {}{}".format(check.name.ljust(width), check.value,
                               "  [MISSING]" if check.problem else "") for check in checks]
    lines += ["FIX ({}): {}".format(check.name, check.problem) for check in checks
              if check.problem]
    return "\n".join(lines)


def self_check(require: str = "auto", importer: Callable[[str], Any] = importlib.import_module
               ) -> Tuple[str, int]:
    """``(report text, exit status)``: 0 when everything required imports, 1 otherwise.

    Args:
        require: See :func:`gather`.
        importer: Imports a package by name (a test's stand-in).
    """
    checks, _ = gather(require, importer)
    return report(checks), 1 if any(check.problem for check in checks) else 0


__all__ = ["Check", "JETPACK_OF_L4T", "REQUIREMENTS", "gather", "l4t_release", "report",
           "self_check"]
