"""CVNET_DIST=device|host chooses the distribution setup.py builds; unset, the Python version does
(< 3.9: device). JetPack 6 has Python 3.10: without the selector it would get the host
distribution, torch and all."""

import os
import runpy
import shutil
import subprocess
import sys
import zipfile

import pytest

import setuptools
from tests.device_modules import ROOT, device_modules

SETUP = os.path.join(ROOT, "setup.py")


@pytest.fixture
def setup_module(monkeypatch):
    """setup.py's functions, with setuptools.setup replaced by a recorder (nothing is built)."""
    calls = []
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("CVNET_DIST", raising=False)
    namespace = runpy.run_path(SETUP, run_name="setup")
    namespace["calls"] = calls
    return namespace


@pytest.mark.device
def test_the_selector_wins_over_the_python_version(setup_module):
    choose = setup_module["chosen_distribution"]
    assert choose({}, (3, 6)) == "device" and choose({}, (3, 10)) == "host"
    assert choose({"CVNET_DIST": "device"}, (3, 10)) == "device"  # JetPack 6
    assert choose({"CVNET_DIST": "Host"}, (3, 11)) == "host"
    assert choose({"CVNET_DIST": "auto"}, (3, 6)) == "device"
    with pytest.raises(SystemExit, match="CVNET_DIST='gpu': expected device .* or host"):
        choose({"CVNET_DIST": "gpu"}, (3, 10))
    with pytest.raises(SystemExit, match="CVNET_DIST=host needs Python >= 3.9"):
        choose({"CVNET_DIST": "host"}, (3, 6))


def _copy(tmp_path):
    """The checkout's source, without its venvs, build output, data and runs."""
    source = str(tmp_path / "cvnet")
    shutil.copytree(ROOT, source, ignore=_ignore)
    return source


def _ignore(folder, names):
    ignored = set(shutil.ignore_patterns("__pycache__", ".pytest_cache")(folder, names))
    if os.path.samefile(folder, ROOT):
        ignored |= set(shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                              "runs", "data")(folder, names))
    return ignored


@pytest.mark.skipif(sys.version_info < (3, 9), reason="Python < 3.9 builds the device "
                    "distribution by default: tests/test_device_install.py installs it")
def test_cvnet_dist_device_builds_the_device_wheel_on_a_new_python(tmp_path):
    source, wheels = _copy(tmp_path), str(tmp_path / "wheels")
    env = dict(os.environ, CVNET_DIST="device")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-w", wheels, source], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)
    assert done.returncode == 0, done.stdout
    (name,) = os.listdir(wheels)
    assert name.startswith("cvnet_device-")
    with zipfile.ZipFile(os.path.join(wheels, name)) as wheel:
        files = wheel.namelist()
        metadata = wheel.read(next(f for f in files if f.endswith(".dist-info/METADATA")))
        entry_points = wheel.read(next(f for f in files
                                       if f.endswith(".dist-info/entry_points.txt")))
    requires = [line for line in metadata.splitlines() if line.startswith(b"Requires-Dist:")]
    # no torch, onnx...; FAISS and OpenVINO only as optional extras (pip3 install .[faiss])
    assert [line for line in requires if b"extra ==" not in line] == [
        b"Requires-Dist: numpy>=1.19"]
    assert sorted(line for line in requires if b"extra ==" in line) == [
        b'Requires-Dist: faiss-cpu==1.7.2; extra == "faiss"',
        b'Requires-Dist: openvino>=2022.1; platform_machine == "x86_64" and extra == "openvino"']
    assert b"cvnet.runners" not in entry_points and b"cvnet-embed" in entry_points
    modules = sorted(f[:-len("/__init__.py")].replace("/", ".") if f.endswith("/__init__.py")
                     else f[:-3].replace("/", ".") for f in files
                     if f.endswith(".py") and not f.endswith("__main__.py"))
    assert modules == sorted(device_modules())

    env["CVNET_DIST"] = "gpu"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path / "other"), source],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)
    assert done.returncode != 0 and "CVNET_DIST='gpu'" in done.stdout
