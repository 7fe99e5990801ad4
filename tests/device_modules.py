"""The two worlds of the layout: which modules must import on a Jetson Nano (Python 3.6, no torch).

docs/layout.md states the rule this module applies: ``cvnet/__init__.py``, the torch-free core
``cvnet/core/`` and the three device packages (``engines/``, ``jetson/``, ``benchmarks/``,
installed as ``cvnet.engines`` & co.) are the device world; every other package of the layout
(cvnet's other subpackages, ``export/``) is the host world. Module lists are read from the
folders, never kept by hand.
"""

import os
from typing import Dict, List

import cvnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The device world's packages, lowest layer first: core <- engines <- jetson, benchmarks.
DEVICE_PACKAGES = ("cvnet.core", "cvnet.engines", "cvnet.jetson", "cvnet.benchmarks")


def package_folder(package: str) -> str:
    """The folder of a package of the layout, relative to the checkout (``cvnet.engines`` ->
    ``engines``, ``cvnet.core`` -> ``cvnet/core``)."""
    for name, folder in cvnet.CHECKOUT_FOLDERS.items():
        if package == name or package.startswith(name + "."):
            return os.path.join(folder, *package[len(name):].split(".")[1:])
    return os.path.join(*package.split("."))


def _modules_under(package: str) -> List[str]:
    """Dotted names of a package and every module below it (``__main__`` left out)."""
    top = os.path.join(ROOT, package_folder(package))
    names = []
    for folder, subfolders, files in os.walk(top):
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.isfile(os.path.join(folder, d, "__init__.py")))
        relative = os.path.relpath(folder, top)
        dotted = package if relative == "." else package + "." + relative.replace(os.sep, ".")
        for name in sorted(files):
            if name == "__init__.py":
                names.append(dotted)
            elif name.endswith(".py") and name != "__main__.py":
                names.append(dotted + "." + name[:-3])
    return names


def layout_packages() -> Dict[str, str]:
    """Every top package of the layout -> its world (``"device"`` or ``"host"``).

    The top packages are cvnet's subpackages and the folders installed under its namespace.
    """
    names = set(cvnet.CHECKOUT_FOLDERS)
    top = os.path.join(ROOT, "cvnet")
    names.update("cvnet." + entry for entry in os.listdir(top)
                 if os.path.isfile(os.path.join(top, entry, "__init__.py")))
    return {name: "device" if name in DEVICE_PACKAGES else "host" for name in sorted(names)}


def device_modules() -> List[str]:
    """The dotted names of every device-side module in the source tree."""
    names = ["cvnet"]
    for package in DEVICE_PACKAGES:
        names += _modules_under(package)
    return names


def host_packages() -> List[str]:
    """The host world's top packages (``cvnet.models``, ..., ``cvnet.export``)."""
    return [name for name, world in layout_packages().items() if world == "host"]
