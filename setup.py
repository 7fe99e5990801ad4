"""The device install: ``pip3 install .`` on Python < 3.9 (a Jetson Nano's 3.6), or wherever
``CVNET_DIST=device`` says so (JetPack 6's Python 3.10).

Python 3.9 and newer build cvnet from ``pyproject.toml`` (its ``[project]`` table, setuptools >=
77): the host install, with torch. setuptools for Python 3.6 (59.6 at most) predates that table,
so for older Pythons ``pyproject.toml`` asks for setuptools < 61, which ignores ``[project]``, and
this file describes the device distribution instead: ``cvnet-device``, the torch-free core
``cvnet/core``, the device packages, and the device commands. The commands' targets
are read from ``[project.scripts]``, so each command is declared once. docs/install.md explains
both installs.

Which distribution is built: ``CVNET_DIST=device`` or ``CVNET_DIST=host`` in the environment,
else by the Python version as above (:func:`chosen_distribution`). A device build on Python 3.9+
(setuptools >= 61, which would apply ``[project]``: the host's name, torch among its
dependencies) uses :func:`device_distclass`, which leaves ``pyproject.toml`` out of the
configuration.
"""

import os
import re
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
#: The device world (docs/layout.md): the torch-free core and the device packages (folders beside
#: cvnet/, installed as cvnet.engines & co. through pyproject.toml's package-dir), each with its
#: subpackages, plus ``cvnet`` itself (its ``__init__`` only). cvnet's other subpackages and
#: export/ are torch code.
DEVICE_ROOTS = ("cvnet.core", "cvnet.engines", "cvnet.jetson", "cvnet.benchmarks")
DEVICE_PACKAGE_DATA = {"cvnet.core": ["*.json"], "cvnet.benchmarks": ["data/*.csv"]}
#: The console commands the device install brings; their targets come from pyproject.toml.
DEVICE_COMMANDS = ("cvnet-build", "cvnet-embed", "cvnet-match", "cvnet-bench", "cvnet-eval")
#: numpy as the Jetson's pins have it (manylinux2014 aarch64 wheels need pip >= 19.3). OpenCV,
#: ONNX Runtime, TensorRT and pycuda come from JetPack or the Jetson Zoo: `python3 -m cvnet.jetson
#: self-check` says which are missing.
DEVICE_REQUIRES = ["numpy>=1.19"]
#: ``pip3 install .[faiss]``: FAISS for cvnet-match (1.7.2 is the last release with Python 3.6
#: wheels, x86_64 and aarch64; it installs beside numpy 1.19.5). ``pip3 install .[openvino]``:
#: OpenVINO for x86 roadside boxes on Python 3.6-3.8 (2022.2 is the last release for Python 3.6;
#: the runner reads its ``openvino.runtime`` API too). There are no OpenVINO wheels for the
#: Nano's aarch64 Python 3.6 (docs/cpu.md).
DEVICE_EXTRAS = {"faiss": ["faiss-cpu==1.7.2"],
                 "openvino": ["openvino>=2022.1; platform_machine == 'x86_64'"]}


def pyproject_table(name, text):
    """``key = "value"`` pairs of one table of a TOML file (flat string values only).

    Enough for ``[project]`` scalars, ``[project.scripts]`` and
    ``[tool.setuptools.package-dir]`` (keys may be quoted); a TOML parser is not in the standard
    library of Python 3.6.
    """
    match = re.search(r"^\[{}\]\s*$(.*?)(?=^\[|\Z)".format(re.escape(name)), text,
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise SystemExit("setup.py: no [{}] table in pyproject.toml".format(name))
    return dict(re.findall(r'^"?([A-Za-z0-9_.-]+)"?\s*=\s*"([^"]*)"\s*$', match.group(1),
                           re.MULTILINE))


def packages_below(name, folder):
    """``name`` and the dotted names of the packages below it (folders with ``__init__.py``)."""
    names = []
    for path, subfolders, files in os.walk(os.path.join(HERE, folder)):
        subfolders.sort()
        if "__init__.py" in files:
            relative = os.path.relpath(path, os.path.join(HERE, folder))
            names.append(name if relative == "." else
                         name + "." + relative.replace(os.sep, "."))
    return names


def device_distribution():
    """The keyword arguments of :func:`setuptools.setup` for the device install."""
    with open(os.path.join(HERE, "pyproject.toml")) as handle:
        text = handle.read()
    project = pyproject_table("project", text)
    scripts = pyproject_table("project.scripts", text)
    folders = pyproject_table("tool.setuptools.package-dir", text)
    packages = ["cvnet"]
    for root in DEVICE_ROOTS:
        packages += packages_below(root, folders.get(root, root.replace(".", os.sep)))
    return dict(
        name="cvnet-device",
        version=project["version"],
        description="cvnet's device side (Jetson Nano, Python 3.6, no torch): "
                    "cvnet-build, cvnet-embed, cvnet-match, cvnet-bench, cvnet-eval.",
        license=project["license"],
        python_requires=">=3.6",
        packages=packages,
        package_dir={name: folder for name, folder in folders.items() if name in DEVICE_ROOTS},
        package_data=DEVICE_PACKAGE_DATA,
        install_requires=DEVICE_REQUIRES,
        extras_require=DEVICE_EXTRAS,
        entry_points={"console_scripts": ["{} = {}".format(command, scripts[command])
                                          for command in DEVICE_COMMANDS]},
    )


def chosen_distribution(environ=None, version=None):
    """``"device"`` or ``"host"``: ``$CVNET_DIST``, else by the Python version (< 3.9: device).

    Raises:
        SystemExit: ``CVNET_DIST`` is neither, or asks for the host below Python 3.9.
    """
    environ = os.environ if environ is None else environ
    version = sys.version_info if version is None else version
    value = environ.get("CVNET_DIST", "").strip().lower()
    if value in ("", "auto"):
        return "host" if tuple(version[:2]) >= (3, 9) else "device"
    if value not in ("device", "host"):
        raise SystemExit("setup.py: CVNET_DIST={!r}: expected device (the torch-free device "
                         "commands) or host (PyTorch, training, export), or leave it unset to "
                         "choose by the Python version".format(value))
    if value == "host" and tuple(version[:2]) < (3, 9):
        raise SystemExit("setup.py: CVNET_DIST=host needs Python >= 3.9 (torch), this is "
                         "{}.{}; unset CVNET_DIST to install the device distribution".format(
                             *version[:2]))
    return value


def device_distclass():
    """A ``Distribution`` that leaves ``pyproject.toml`` out of the configuration, or None where
    setuptools does not read it (< 61, Python 3.6's)."""
    import setuptools
    from setuptools.dist import Distribution

    if not hasattr(Distribution, "_get_project_config_files"):
        if int(setuptools.__version__.split(".")[0]) >= 61:  # reads [project], no way around it
            raise SystemExit("setup.py: setuptools {} has no hook to leave pyproject.toml's "
                             "[project] out, so CVNET_DIST=device would build the host "
                             "distribution (torch); use a setuptools that has it (61 to 84 "
                             "do), or run from the checkout (PYTHONPATH=<checkout>)".format(
                                 setuptools.__version__))
        return None

    class DeviceDistribution(Distribution):
        """The device distribution on setuptools >= 61: without the host's ``[project]``."""

        def _get_project_config_files(self, filenames):
            inifiles, _ = super()._get_project_config_files(filenames)
            return inifiles, []

    return DeviceDistribution


if chosen_distribution() == "host":
    setup()  # everything comes from pyproject.toml
else:
    distclass = device_distclass()
    setup(**dict(device_distribution(), **({"distclass": distclass} if distclass else {})))
