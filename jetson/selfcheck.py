"""``python3 -m cvnet.jetson self-check``: what this container sees, and what it lacks, with the fix.

The most common Jetson failure is a container that cannot see TensorRT: on JetPack 4 the NVIDIA
container runtime mounts CUDA, cuDNN and TensorRT (with its Python 3.6 bindings) from the host,
so a container started without ``--runtime nvidia`` has none of them.
"""

import os
import platform
import re
import shutil
import subprocess
from typing import List, NamedTuple, Optional, Tuple

from cvnet.engines.deps import probe

#: L4T release -> JetPack release (JetPack 4.6.x, the Nano's last line).
JETPACK_OF_L4T = {"32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3",
                  "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6"}
TEGRA_RELEASE = "/etc/nv_tegra_release"
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


def l4t_release(path: str = TEGRA_RELEASE) -> Optional[str]:
    """``"32.7.1"`` from ``/etc/nv_tegra_release``; None off Jetson."""
    try:
        with open(path, "r") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return "{}.{}".format(match.group(1), match.group(2)) if match else None


def cuda_version() -> str:
    """The CUDA toolkit version from ``/usr/local/cuda``, or why it is unknown."""
    for name in ("version.txt", "version.json"):
        path = os.path.join("/usr/local/cuda", name)
        if os.path.exists(path):
            with open(path, "r") as handle:
                match = re.search(r"(\d+\.\d+(\.\d+)?)", handle.read())
            if match:
                return match.group(1)
    nvcc = shutil.which("nvcc")
    return "toolkit not found{}".format(" (nvcc at {})".format(nvcc) if nvcc else "")


def _command(args: List[str]) -> Optional[str]:
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.check_output(args, stderr=subprocess.STDOUT, timeout=10)
    except (OSError, subprocess.SubprocessError) as err:
        return "failed ({})".format(err)
    return out.decode("utf-8", "replace").strip()


def power_mode() -> str:
    """The nvpmodel power mode (e.g. ``"MAXN"``), or ``"n/a"`` off Jetson."""
    text = _command(["nvpmodel", "-q"])
    if text is None:
        return "n/a (no nvpmodel)"
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return match.group(1) if match else text.splitlines()[0] if text else "unknown"


def gather(require: str = "auto") -> Tuple[List[Check], bool]:
    """Collects the report.

    Args:
        require: ``"tensorrt"`` (TensorRT + pycuda), ``"onnxruntime"``, ``"none"``, or
            ``"auto"``: TensorRT on a Jetson, otherwise any one backend.

    Returns:
        ``(checks, on_jetson)``.
    """
    l4t = l4t_release()
    on_jetson = l4t is not None
    if require == "auto":
        require = "tensorrt" if on_jetson else "any"
    checks = [Check("L4T", l4t or "not a Jetson ({} missing)".format(TEGRA_RELEASE)),
              Check("JetPack", JETPACK_OF_L4T.get(l4t, "unknown") if l4t else "n/a")]
    versions = {module: probe(module)
                for module in ("tensorrt", "pycuda", "onnxruntime", "numpy", "cv2")}
    missing = {module: value.startswith("not importable") for module, value in versions.items()}
    checks.append(Check("TensorRT", versions["tensorrt"],
                        FIX_TENSORRT if require == "tensorrt" and missing["tensorrt"] else None))
    checks.append(Check("pycuda", versions["pycuda"],
                        FIX_PYCUDA if require == "tensorrt" and missing["pycuda"] else None))
    checks.append(Check("CUDA", cuda_version()))
    checks.append(Check("Python", platform.python_version()))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    checks.append(Check("numpy", "{} (OPENBLAS_CORETYPE={})".format(versions["numpy"], coretype),
                        FIX_OPENBLAS if on_jetson and not coretype else None))
    checks.append(Check("OpenCV", versions["cv2"]))
    ort_problem = None
    if require == "onnxruntime" and missing["onnxruntime"]:
        ort_problem = FIX_ORT
    if require == "any" and missing["onnxruntime"] and missing["tensorrt"]:
        ort_problem = "no backend: neither TensorRT nor onnxruntime imports. " + FIX_ORT
    checks.append(Check("onnxruntime", versions["onnxruntime"], ort_problem))
    checks.append(Check("GPU", _gpu()))
    checks.append(Check("power mode", power_mode()))
    return checks, on_jetson


def _gpu() -> str:
    from cvnet.core.errors import CVNetError
    from cvnet.engines.gpu import gpu_info

    try:
        gpu = gpu_info(0)
    except CVNetError as err:
        return "none found ({})".format(err)
    return "{} (compute capability {})".format(gpu.name, gpu.compute_capability)


def report(checks: List[Check]) -> str:
    """The report as aligned text; problems follow as ``FIX:`` lines."""
    width = max(len(check.name) for check in checks)
    lines = ["{}  {}{}".format(check.name.ljust(width), check.value,
                               "  [MISSING]" if check.problem else "") for check in checks]
    lines += ["FIX ({}): {}".format(check.name, check.problem) for check in checks
              if check.problem]
    return "\n".join(lines)


def self_check(require: str = "auto") -> Tuple[str, int]:
    """``(report text, exit status)``: 0 when everything required is there, 1 otherwise."""
    checks, _ = gather(require)
    return report(checks), 1 if any(check.problem for check in checks) else 0


__all__ = ["Check", "JETPACK_OF_L4T", "gather", "l4t_release", "report", "self_check"]
