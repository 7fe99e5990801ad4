"""Lazy imports of the optional heavy packages, with install hints (Python 3.6).

Device modules import only the standard library, numpy and OpenCV at module level; TensorRT,
pycuda, ONNX Runtime, OpenVINO and PyTorch are imported here, inside the function that needs them,
and a missing one raises :class:`MissingDependencyError` that names what needed it (the model file,
for a runner), the package, and the fix. Nothing is ever installed automatically.
"""

import importlib
from typing import Any, Optional

from cvnet.engines.errors import MissingDependencyError

#: Top-level package -> how to get it, on the Jetson Nano first.
INSTALL_HINTS = {
    "tensorrt": (
        "On a Jetson, TensorRT's Python bindings come with JetPack (JetPack 4.6: TensorRT 8.2 "
        "for Python 3.6, apt package python3-libnvinfer, in /usr/lib/python3.6/dist-packages); "
        "in an L4T container run it with --runtime nvidia, and create any venv with "
        "--system-site-packages so that it sees them. On an x86 machine with an NVIDIA GPU: "
        "pip install tensorrt (it downloads from pypi.nvidia.com)."),
    "pycuda": (
        "On the Nano (Python 3.6): export PATH=/usr/local/cuda/bin:$PATH, then "
        "pip3 install 'pycuda<=2022.1' (2022.1 is the last release for Python 3.6; it compiles "
        "on the device). The l4t-pytorch and l4t-ml images already contain it. Elsewhere: "
        "pip install pycuda."),
    "onnxruntime": (
        "pip install onnxruntime (CPU; 1.10.0 is the newest wheel for Python 3.6 on aarch64), "
        "or on JetPack 4.6 the Jetson Zoo's onnxruntime_gpu 1.11 wheel for the CUDA and "
        "TensorRT providers."),
    "openvino": (
        "pip install cvnet[openvino] (or pip install openvino): wheels for x86-64 Linux, Windows "
        "and macOS (2026.x for Python 3.10+; 2022.2 is the last for Python 3.6), none for the "
        "Jetson Nano's aarch64 Python 3.6 (docs/cpu.md); there, use ONNX Runtime or TensorRT."),
    "torch": (
        "PyTorch is for the host: use the project's host environment (make .venv/.installed "
        "sets one up). On the device, export to ONNX on the host (cvnet-export) and open the "
        ".onnx or the .plan built from it."),
}


def require(module: str, purpose: str, fix: Optional[str] = None) -> Any:
    """Imports ``module`` or raises an error saying what needed it and how to fix that.

    Args:
        module: Dotted module name, e.g. ``"tensorrt"`` or ``"pycuda.driver"``.
        purpose: What needs it, starting the message: ``"cvnet-build"``, or for a model file
            ``"<path>: a TensorRT engine"``.
        fix: What to do instead; by default how to install the package (``INSTALL_HINTS``).

    Raises:
        MissingDependencyError: The import failed; the message has the import error and the fix.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingDependencyError("{} needs {}, which cannot be imported here ({}: {}). {}".format(
            purpose, top, type(err).__name__, err,
            INSTALL_HINTS.get(top, "") if fix is None else fix).strip())
