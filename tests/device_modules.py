"""The device-side modules: what must import on a Jetson Nano (Python 3.6, no torch)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Packages that are device-side as a whole.
DEVICE_PACKAGES = ("engines", "jetson", "benchmarks")


def device_modules():
    """Returns the dotted names of every device-side module in the source tree.

    By rule, the modules directly inside ``cvnet/`` are torch-free (torch code lives in
    subpackages such as ``cvnet.models``), and so is every module of the device packages.
    """
    names = ["cvnet"]
    for entry in sorted(os.listdir(os.path.join(ROOT, "cvnet"))):
        if entry.endswith(".py") and entry != "__init__.py":
            names.append("cvnet." + entry[:-3])
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
