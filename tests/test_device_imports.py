"""Every device-side module imports without torch or TensorRT, in a fresh interpreter."""

import subprocess
import sys

import pytest

from tests.device_modules import ROOT, device_modules

pytestmark = pytest.mark.device

FORBIDDEN = ("torch", "tensorrt", "pycuda", "onnx")


def test_device_modules_are_found():
    modules = device_modules()
    assert "cvnet" in modules and "cvnet.core.tensorrt_ops" in modules
    assert not any(name.startswith("cvnet.models") for name in modules)


@pytest.mark.parametrize("module", device_modules())
def test_device_module_imports_without_heavy_dependencies(module):
    code = ("import importlib, sys; importlib.import_module({!r}); "
            "print(','.join(m for m in {!r} if m in sys.modules))").format(module, FORBIDDEN)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, "importing {} failed:\n{}".format(module, result.stderr)
    assert result.stdout.strip() == "", "{} imported {} at module level".format(
        module, result.stdout.strip())
