"""The layout and the installed names agree: folders, pyproject.toml and cvnet's checkout finder.

The helper folders (``engines/``, ``jetson/``, ``benchmarks/``, ``export/``) install as
``cvnet.engines`` & co.; a checkout that is not installed resolves the same names through
:class:`cvnet.CheckoutFinder`, and nothing else of the checkout becomes ``cvnet.X``.
"""

import os
import subprocess
import sys

import pytest

import cvnet
from tests.device_modules import ROOT, layout_packages, package_folder

pytestmark = pytest.mark.device


def _run(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_every_layout_package_has_its_folder():
    packages = layout_packages()
    assert {"cvnet.core", "cvnet.engines", "cvnet.jetson", "cvnet.benchmarks"} == {
        name for name, world in packages.items() if world == "device"}
    assert {"cvnet.models", "cvnet.training", "cvnet.export"} <= set(packages)
    for name in packages:
        assert os.path.isfile(os.path.join(ROOT, package_folder(name), "__init__.py")), name


def test_a_checkout_resolves_exactly_the_mapped_names(tmp_path):
    """From outside the checkout, with only PYTHONPATH: the four names, from their folders."""
    code = ("import importlib, importlib.util, json, os, cvnet\n"
            "found = {n: os.path.dirname(importlib.import_module(n).__file__)\n"
            "         for n in sorted(cvnet.CHECKOUT_FOLDERS)}\n"
            "found['cli'] = importlib.import_module('cvnet.jetson.cli').__file__\n"
            "others = [n for n in ('cvnet.tests', 'cvnet.docs', 'cvnet.setup', 'cvnet.docker')\n"
            "          if importlib.util.find_spec(n) is not None]\n"
            "print(json.dumps([found, others]))")
    result = _run(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    import json

    found, others = json.loads(result.stdout)
    for name, folder in cvnet.CHECKOUT_FOLDERS.items():
        assert os.path.samefile(found[name], os.path.join(ROOT, folder)), name
    assert os.path.samefile(found["cli"], os.path.join(ROOT, "jetson", "cli.py"))
    assert others == []


def test_the_finder_is_only_for_a_checkout(tmp_path):
    """An installed cvnet (engines/ inside it) or a folder without pyproject.toml gets none."""
    checkout = tmp_path / "checkout"
    (checkout / "cvnet").mkdir(parents=True)
    (checkout / "engines").mkdir()
    assert cvnet.checkout_root(str(checkout / "cvnet")) is None  # no pyproject.toml
    (checkout / "pyproject.toml").write_text(u"")
    assert cvnet.checkout_root(str(checkout / "cvnet")) == str(checkout)
    (checkout / "cvnet" / "engines").mkdir()
    assert cvnet.checkout_root(str(checkout / "cvnet")) is None  # installed layout
    assert cvnet.CheckoutFinder(str(checkout)).find_spec("cvnet.tests") is None


@pytest.mark.parametrize("package", sorted(cvnet.CHECKOUT_FOLDERS))
def test_python_m_runs_the_namespaced_package(package):
    """``python3 -m cvnet.jetson`` & co. from a checkout (cvnet-export's help needs no torch)."""
    result = subprocess.run([sys.executable, "-m", package, "--help"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


def test_pyproject_installs_the_layout():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        config = tomllib.load(handle)["tool"]["setuptools"]
    assert config["package-dir"] == cvnet.CHECKOUT_FOLDERS
    expected = {"cvnet"}
    for name in layout_packages():
        top = os.path.join(ROOT, package_folder(name))
        for folder, _, files in os.walk(top):
            if "__init__.py" in files:
                relative = os.path.relpath(folder, top)
                expected.add(name if relative == "." else
                             name + "." + relative.replace(os.sep, "."))
    assert sorted(config["packages"]) == sorted(expected)
