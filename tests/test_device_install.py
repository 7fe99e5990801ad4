"""The Nano's install line, for real: `pip install .` on Python < 3.9 brings the device commands.

Runs in the device job (Python 3.6, pip 21.3.1, no torch): the checkout is copied and installed
with the line docs/install.md gives (under ``--prefix``, so the test venv stays as it was), and
each device command answers ``--help`` from the installed copy.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.device_modules import ROOT, device_modules

pytestmark = [
    pytest.mark.device,
    pytest.mark.skipif(sys.version_info >= (3, 9),
                       reason="Python >= 3.9 installs the host distribution (pyproject.toml); "
                              "the device install is for Python < 3.9 (make test-device)"),
]

DEVICE_COMMANDS = ("cvnet-build", "cvnet-embed", "cvnet-match", "cvnet-bench", "cvnet-eval")
#: Not part of the source: the checkout's own venvs and build output, a user's data and runs.
_NOT_SOURCE_AT_ROOT = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                             "runs", "data")
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", ".pytest_cache")


def _ignore(folder, names):
    ignored = set(_NOT_SOURCE(folder, names))
    if os.path.samefile(folder, ROOT):
        ignored |= set(_NOT_SOURCE_AT_ROOT(folder, names))
    return ignored


def _run(args, **kwargs):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site-packages, bin) of the device distribution installed from a copy of the checkout."""
    work = tmp_path_factory.mktemp("device-install")
    source, prefix = str(work / "cvnet"), str(work / "prefix")
    shutil.copytree(ROOT, source, ignore=_ignore)
    result = _run([sys.executable, "-m", "pip", "install", "--prefix", prefix, source])
    assert result.returncode == 0, "pip install of the device distribution failed:\n" + \
        result.stdout
    site = os.path.join(prefix, "lib", "python{}.{}".format(*sys.version_info[:2]),
                        "site-packages")
    return site, os.path.join(prefix, "bin")


def _installed_modules(site):
    names = []
    for folder, _, files in os.walk(site):
        dotted = os.path.relpath(folder, site).replace(os.sep, ".")
        if ".dist-info" in dotted or ".egg-info" in dotted or dotted == ".":
            continue
        for name in files:
            if name == "__init__.py":
                names.append(dotted)
            elif name.endswith(".py") and name != "__main__.py":
                names.append(dotted + "." + name[:-3])
    return sorted(names)


def test_device_install_holds_every_device_module_and_no_torch_code(installed):
    site, _ = installed
    assert _installed_modules(site) == sorted(device_modules())
    assert os.path.isfile(os.path.join(site, "cvnet", "core", "tensorrt_onnx_ops.json"))
    assert os.path.isfile(os.path.join(site, "cvnet", "benchmarks", "data", "table2.csv"))


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_device_command_is_installed_and_answers_help(installed, command):
    site, scripts = installed
    env = dict(os.environ, PYTHONPATH=site)
    result = _run([os.path.join(scripts, command), "--help"], env=env, cwd=scripts)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("usage: {}".format(command)), result.stdout
