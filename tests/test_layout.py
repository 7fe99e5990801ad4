"""The layout and the installed names agree: folders, pyproject.toml and cvnet's checkout finder.

The helper folders (``engines/``, ``jetson/``, ``benchmarks/``, ``export/``) install as
``cvnet.engines`` & co.; a checkout that is not installed resolves the same names through
:class:`cvnet.CheckoutFinder`, and nothing else of the checkout becomes ``cvnet.X``.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig

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


def _copy_checkout(target):
    """A scratch copy of the checkout's code: what ``PYTHONPATH=copy`` runs."""
    os.makedirs(target)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), target)
    for folder in ["cvnet"] + sorted(cvnet.CHECKOUT_FOLDERS.values()):
        shutil.copytree(os.path.join(ROOT, folder), os.path.join(target, folder),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


#: Prints where cvnet and the four names came from, as JSON.
_WHERE = ("import importlib, json, cvnet\n"
          "print(json.dumps([cvnet.__file__] + [importlib.import_module(n).__file__\n"
          "                                     for n in sorted(cvnet.CHECKOUT_FOLDERS)]))")


def _assert_one_checkout(stdout):
    """Every name came from the checkout cvnet itself came from."""
    paths = json.loads(stdout)
    checkout = os.path.dirname(os.path.dirname(paths[0]))
    for path in paths[1:]:
        assert os.path.commonpath([checkout, path]) == checkout, (paths[0], path)


def test_a_checkout_wins_over_another_trees_finder(tmp_path):
    """``PYTHONPATH=copy`` while another tree's editable install maps the same names (its
    setuptools finder is on ``sys.meta_path`` from start-up, as its ``.pth`` puts it there): the
    four names come from the copy, not from the other tree (code of two checkouts mixed)."""
    copy = _copy_checkout(str(tmp_path / "copy"))
    other = ("import importlib.util, os, sys\n"
             "class OtherTree(object):  # what setuptools' editable finder does\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        folder = {{'cvnet.engines': 'engines', 'cvnet.jetson': 'jetson',\n"
             "                  'cvnet.benchmarks': 'benchmarks', 'cvnet.export': 'export'}}"
             ".get(name)\n"
             "        if folder is None:\n"
             "            return None\n"
             "        location = os.path.join({root!r}, folder)\n"
             "        return importlib.util.spec_from_file_location(\n"
             "            name, os.path.join(location, '__init__.py'),\n"
             "            submodule_search_locations=[location])\n"
             "sys.meta_path.append(OtherTree())\n").format(root=ROOT)
    result = subprocess.run([sys.executable, "-c", other + _WHERE], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ, PYTHONPATH=copy))
    assert result.returncode == 0, result.stderr
    _assert_one_checkout(result.stdout)
    assert json.loads(result.stdout)[0].startswith(copy)


@pytest.mark.skipif(not glob.glob(os.path.join(sysconfig.get_paths()["purelib"],
                                               "__editable__*cvnet*finder.py")),
                    reason="this interpreter has no editable install of cvnet (make "
                           ".venv/.installed makes one)")
def test_a_checkout_wins_over_a_real_editable_install(tmp_path):
    """The same with this interpreter's own editable install of the checkout (``pip install
    -e .``), the host venv's set-up, and a scratch copy on ``PYTHONPATH``."""
    copy = _copy_checkout(str(tmp_path / "copy"))
    result = subprocess.run([sys.executable, "-c", _WHERE], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ, PYTHONPATH=copy))
    assert result.returncode == 0, result.stderr
    _assert_one_checkout(result.stdout)
    assert json.loads(result.stdout)[0].startswith(copy)


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
