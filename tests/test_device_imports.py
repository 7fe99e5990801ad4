"""The device world imports neither torch nor host code, not even lazily; and it is layered.

Two checks of every device-side module (tests/device_modules.py reads them from the layout):

- a static scan of its source: every import anywhere in the file (module level or inside a
  function; ``import x``, ``from x import y``, relative imports resolved, and
  ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name) must not reach
  torch, torchvision or a host package (cvnet.models, cvnet.training, cvnet.search,
  cvnet.gpucheck, cvnet.export, and any other package the layout puts in the host world), nor the
  old top-level names (``engines``, ``export``...); and inside the device world it must not go
  up a layer (core <- engines <- jetson, benchmarks);
- a fresh interpreter imports it, and torch, TensorRT, pycuda and onnx are still not loaded.

Runs under Python 3.6 too (the device job).
"""

import ast
import os
import subprocess
import sys
from typing import Iterator, List, Optional, Tuple

import pytest

import cvnet
from tests.device_modules import (DEVICE_PACKAGES, ROOT, device_modules, host_packages,
                                  package_folder)

pytestmark = pytest.mark.device

FORBIDDEN = ("torch", "tensorrt", "pycuda", "onnx")
#: Third-party packages device code never imports, not even lazily.
HOST_ONLY_DEPENDENCIES = ("torch", "torchvision")
#: Layer of each device package: an import may go down or sideways, never up.
LAYERS = {"cvnet": 0, "cvnet.core": 0, "cvnet.engines": 1, "cvnet.jetson": 2,
          "cvnet.benchmarks": 2}
_IMPORT_FUNCTIONS = ("import_module", "importlib.import_module", "__import__")


def _literal(node: ast.AST) -> Optional[str]:
    """The text of a string literal node, else None."""
    constant = getattr(ast, "Constant", None)
    if constant is not None and isinstance(node, constant) and isinstance(node.value, str):
        return node.value
    if sys.version_info < (3, 8) and isinstance(node, ast.Str):  # the 3.6 parser's literals
        return node.s
    return None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _resolve(name: str, level: int, package: str) -> str:
    """An import's absolute name: ``from ..x import y`` in ``a.b.c`` (package ``a.b``): ``a.x``."""
    if level == 0:
        return name
    base = package.split(".")
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imported_names(source: str, module: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """``(line, absolute module or ``module.name``)`` of every import in a module's source."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, base + "." + alias.name
        elif (isinstance(node, ast.Call) and _dotted(node.func) in _IMPORT_FUNCTIONS
              and node.args and _literal(node.args[0]) is not None):
            name = _literal(node.args[0])
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                name = _resolve(name.lstrip("."), level, package)
            yield node.lineno, name


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer_of(name: str) -> Optional[int]:
    best = max((package for package in LAYERS if _within(name, package)), key=len, default=None)
    return None if best is None else LAYERS[best]


def violations(source: str, module: str, is_package: bool) -> List[str]:
    """Why each import of a device-side module breaks the rule (empty: none does)."""
    hosts = host_packages()
    problems = []
    own = _layer_of(module)
    for line, name in imported_names(source, module, is_package):
        top = name.split(".")[0]
        host = next((package for package in hosts if _within(name, package)), None)
        if top in HOST_ONLY_DEPENDENCIES:
            problems.append("line {}: imports {} (torch is host-only)".format(line, name))
        elif host is not None:
            problems.append("line {}: imports {} (host package {})".format(line, name, host))
        elif top in cvnet.CHECKOUT_FOLDERS.values():
            problems.append("line {}: imports {} (the folder's installed name is cvnet.{})"
                            .format(line, name, top))
        elif top == "cvnet" and own is not None:
            layer = _layer_of(name)
            if layer is not None and layer > own:
                problems.append("line {}: imports {} (a higher layer of the device world: core "
                                "<- engines <- jetson, benchmarks)".format(line, name))
    return problems


def _source_file(module: str) -> Tuple[str, bool]:
    """(path, is_package) of a device module."""
    if module == "cvnet":
        return os.path.join(ROOT, "cvnet", "__init__.py"), True
    package = max((p for p in DEVICE_PACKAGES if _within(module, p)), key=len)
    folder = os.path.join(ROOT, package_folder(package), *module[len(package):].split(".")[1:])
    if os.path.isdir(folder):
        return os.path.join(folder, "__init__.py"), True
    return folder + ".py", False


def test_device_modules_are_found():
    modules = device_modules()
    assert "cvnet" in modules and "cvnet.core.tensorrt_ops" in modules
    assert "cvnet.engines.cli" in modules and "cvnet.jetson.eval_cli" in modules
    assert not any(name.startswith(("cvnet.models", "cvnet.export")) for name in modules)


@pytest.mark.parametrize("module", device_modules())
def test_device_module_imports_neither_torch_nor_host_code_anywhere(module):
    path, is_package = _source_file(module)
    with open(path, "rb") as handle:
        source = handle.read().decode("utf-8")
    problems = violations(source, module, is_package)
    assert not problems, "{} ({}):\n  {}".format(module, os.path.relpath(path, ROOT),
                                                "\n  ".join(problems))


#: What only code holding the torch module does: a parameter or name ``torch``, or a call of
#: its thread settings. Device code never drives torch, even when handed the module.
_TORCH_NAMES = ("torch",)
_TORCH_CALLS = ("set_num_threads", "get_num_threads", "set_num_interop_threads")


def torch_handling(source: str) -> List[str]:
    """Where a device module's code handles the torch module (not its text or docstrings)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg) and node.arg in _TORCH_NAMES:
            found.append("line {}: takes a parameter named {!r}".format(node.lineno, node.arg))
        elif isinstance(node, ast.Name) and node.id in _TORCH_NAMES:
            found.append("line {}: uses the name {!r}".format(node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in _TORCH_CALLS:
            found.append("line {}: calls .{}".format(node.lineno, node.attr))
    return found


@pytest.mark.parametrize("module", device_modules())
def test_device_module_does_not_drive_torch(module):
    """A torch policy (one that is handed the torch module and sets its threads) is host code:
    cvnet.models.threads. The device world holds only the torch-free facts (cvnet.core.cpu)."""
    path, _ = _source_file(module)
    with open(path, "rb") as handle:
        problems = torch_handling(handle.read().decode("utf-8"))
    assert not problems, "{} ({}) handles the torch module; move that to the host side:\n  {}"\
        .format(module, os.path.relpath(path, ROOT), "\n  ".join(problems))


def test_the_torch_scan_finds_a_policy_handed_the_module():
    source = "def configure(torch, n):\n    torch.set_num_threads(n)\n"
    assert sorted(torch_handling(source)) == ["line 1: takes a parameter named 'torch'",
                                              "line 2: calls .set_num_threads",
                                              "line 2: uses the name 'torch'"]


PLANTED = '''
import os

def embed(path):
    import torch
    return torch.load(path)

def runner():
    from cvnet.models import build_model
    from ..models.runner import TorchRunner
    import importlib
    importlib.import_module("cvnet.training.trainer")
    return __import__("torchvision"), build_model

def sideways():
    from . import store
    from cvnet.core.fileio import make_folders
    from cvnet.jetson import cli
    import engines
'''


def test_the_scan_finds_lazy_imports_however_they_are_written():
    """The scan itself: planted lazy imports of torch and host code in a device module."""
    problems = violations(PLANTED, "cvnet.engines.fake", is_package=False)
    found = "\n".join(problems)
    for expected in ("line 5: imports torch (torch is host-only)",
                     "line 9: imports cvnet.models (host package cvnet.models)",
                     "line 10: imports cvnet.models.runner (host package cvnet.models)",
                     "line 12: imports cvnet.training.trainer (host package cvnet.training)",
                     "line 13: imports torchvision (torch is host-only)",
                     "line 18: imports cvnet.jetson (a higher layer",
                     "line 19: imports engines (the folder's installed name is cvnet.engines)"):
        assert expected in found, found
    assert not any(line.startswith(("line 16", "line 17")) for line in problems), found


@pytest.mark.parametrize("module", device_modules())
def test_device_module_imports_without_heavy_dependencies(module):
    code = ("import importlib, sys; importlib.import_module({!r}); "
            "print(','.join(m for m in {!r} if m in sys.modules))").format(module, FORBIDDEN)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, "importing {} failed:\n{}".format(module, result.stderr)
    assert result.stdout.strip() == "", "{} imported {} at module level".format(
        module, result.stdout.strip())
