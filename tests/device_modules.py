"""The device-side modules: what must import on a Jetson Nano (Python 3.6, no torch)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Packages that are device-side as a whole.
DEVICE_PACKAGES = ("cvnet/core", "engines", "jetson", "benchmarks")


def device_modules():
    """Returns the dotted names of every device-side module in the source tree.

    By rule, ``cvnet/__init__.py``, the torch-free core ``cvnet/core`` and every module of the
    device packages are device-side; torch code lives in cvnet's other subpackages.
    """
    names = ["cvnet"]
    for package in DEVICE_PACKAGES:
        top = os.path.join(ROOT, package)
        for folder, _, files in sorted(os.walk(top)):
            dotted = os.path.relpath(folder, ROOT).replace(os.sep, ".")
            for name in sorted(files):
                if name == "__init__.py":
                    names.append(dotted)
                elif name.endswith(".py") and name != "__main__.py":
                    names.append(dotted + "." + name[:-3])
    return names
