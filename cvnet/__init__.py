"""cvnet: cross-view (aerial <-> ground) vehicle re-identification for edge devices.

Importing ``cvnet`` never imports torch. The torch-free core (:mod:`cvnet.core`) runs on a Jetson
Nano under Python 3.6; the PyTorch parts live in the host subpackages (:mod:`cvnet.models`,
:mod:`cvnet.training`, :mod:`cvnet.search`, :mod:`cvnet.gpucheck`). docs/layout.md has the map.

The helper packages keep the top-level folders of the repository (``engines/``, ``jetson/``,
``benchmarks/``, ``export/``) and are installed under this namespace (``cvnet.engines``, ...),
so that cvnet puts no generic top-level names into site-packages. When ``cvnet`` runs from a
source checkout (not installed: the device job's tests, ``PYTHONPATH=checkout python3 -m
cvnet.jetson``; or installed editable) the same names resolve through :class:`CheckoutFinder`,
which this module puts first on ``sys.meta_path``, so that they come from the same checkout as
``cvnet`` itself even when another tree's editable install has its own finder. Python 3.6,
standard library only.
"""

import importlib.util
import os
import sys
from typing import Optional

__version__ = "0.1.0"

#: Installed name -> the folder beside ``cvnet/`` it comes from (``[tool.setuptools.package-dir]``
#: of pyproject.toml says the same to setuptools).
CHECKOUT_FOLDERS = {"cvnet.engines": "engines", "cvnet.jetson": "jetson",
                    "cvnet.benchmarks": "benchmarks", "cvnet.export": "export"}


class CheckoutFinder(object):
    """A meta-path finder mapping exactly :data:`CHECKOUT_FOLDERS` to folders of a checkout.

    Any other name, including every other top-level folder of the checkout (``tests``,
    ``docs``...), is left to the other finders, so nothing else becomes importable as ``cvnet.X``.
    Submodules (``cvnet.engines.cli``) are found by the ordinary path finder through the
    package's ``__path__``, which is the folder.

    Args:
        root: The checkout: the folder holding ``pyproject.toml``, ``cvnet/`` and ``engines/``.
    """

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        """The spec of ``cvnet.engines`` & co. from the checkout; None for any other name."""
        folder = CHECKOUT_FOLDERS.get(fullname)
        if folder is None:
            return None
        location = os.path.join(self.root, folder)
        init = os.path.join(location, "__init__.py")
        if not os.path.isfile(init):
            return None
        return importlib.util.spec_from_file_location(fullname, init,
                                                      submodule_search_locations=[location])

    def invalidate_caches(self) -> None:
        """Nothing is cached."""


def checkout_root(package_folder: str) -> Optional[str]:
    """The checkout ``package_folder`` (this ``cvnet/``) sits in, or None when it is installed.

    A checkout has ``pyproject.toml`` and ``engines/`` beside ``cvnet/``; an installed ``cvnet``
    holds ``engines/`` itself.
    """
    root = os.path.dirname(package_folder)
    if (os.path.isfile(os.path.join(root, "pyproject.toml"))
            and os.path.isdir(os.path.join(root, "engines"))
            and not os.path.isdir(os.path.join(package_folder, "engines"))):
        return root
    return None


def _install_checkout_finder() -> None:
    """Puts :class:`CheckoutFinder` first on ``sys.meta_path`` when cvnet runs from a checkout.

    First, not last: an editable install of *another* checkout adds setuptools' finder for the
    same four names to ``sys.meta_path`` at start-up, and ``PYTHONPATH=this-checkout`` must not
    get ``cvnet`` from here and ``cvnet.engines`` from there. It answers only the four names, so
    being first changes nothing else.
    """
    root = checkout_root(os.path.dirname(os.path.abspath(__file__)))
    if root is not None and not any(type(finder).__name__ == CheckoutFinder.__name__
                                    for finder in sys.meta_path):  # once, even if reloaded
        sys.meta_path.insert(0, CheckoutFinder(root))


_install_checkout_finder()
