"""Host abilities handed to device-safe code: Python entry points (Python 3.6, no torch).

Device-side code never imports a host module, not even inside a function. Where it can use a
host ability when one is installed (the PyTorch runner for ``.pt`` files, the benchmark's model
preparation), the host distribution declares it as an entry point in pyproject.toml, and the
device-side code finds it here by group and name::

    [project.entry-points."cvnet.runners"]
    pt = "cvnet.models.runner:TorchRunner"

Entry points are read with :mod:`importlib.metadata` (Python 3.8+). Python 3.6, the Jetson
Nano's, has no such module, and the device install declares no entry point: there, every
lookup finds nothing and the caller refuses with its own message naming the file and the fix.

Two failures are told apart: no plugin registered (:func:`load_plugin` returns None: the host
package is not installed, ``pip install -e .``), and a plugin registered that does not load
(:class:`PluginError`: torch is missing or broken, or the install that registered it is stale
and names a module that has moved).
"""

import importlib
import logging
from typing import Any, Dict, Optional

from cvnet.core.errors import CVNetError

logger = logging.getLogger(__name__)

#: Runners for model files by suffix without the dot (``pt`` -> a Runner class).
RUNNERS = "cvnet.runners"
#: cvnet-bench's host abilities (``prepare_model``: an untrained model exported for a default run).
BENCH = "cvnet.bench"


#: How to (re)install the host package that registers the plugins, from a checkout.
INSTALL_HINT = "pip install -e . (or make .venv/.installed) in the cvnet checkout"


class PluginError(CVNetError, ImportError):
    """A plugin is registered but does not load here; the message says why and what to do.

    An ImportError too, so a caller that refuses when a host ability cannot be imported keeps
    working.

    Attributes:
        stale: The registration names a cvnet module that does not exist (an old install's
            metadata, e.g. a leftover ``.egg-info`` after a module moved).
    """

    def __init__(self, message: str, stale: bool = False):
        super(PluginError, self).__init__(message)
        self.stale = stale


def entry_points(group: str) -> Dict[str, Any]:
    """The entry points of ``group`` installed here, by name (empty on Python < 3.8)."""
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8: the device, which has no host side
        return {}
    found = metadata.entry_points()
    selected = found.select(group=group) if hasattr(found, "select") else found.get(group, ())
    return {point.name: point for point in selected}


def load_plugin(group: str, name: str) -> Optional[Any]:
    """The object the entry point ``name`` of ``group`` names, or None when none is registered.

    Raises:
        PluginError: The plugin is registered but does not load here: torch is missing or
            fails to import, or (``stale``) the registration is an old install's and names a
            module that moved. Any exception of the import is turned into it, so that a broken
            host install gives the caller's refusal, never a traceback.
    """
    point = entry_points(group).get(name)
    if point is None:
        return None
    logger.debug("loading %s plugin %s = %s", group, name, point.value)
    # Two steps, told apart: the module's import (a broken torch or numpy raises anything,
    # AttributeError included), then its attribute (missing only in a stale registration).
    module, _, attribute = point.value.partition(":")
    module, attribute = module.strip(), attribute.split("[", 1)[0].strip()

    def refuse(why: str, stale: bool = False) -> PluginError:
        return PluginError("the {} plugin {!r} ({}) is registered but does not load: {}".format(
            group, name, point.value, why), stale=stale)

    try:
        loaded = importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import-time failure of host code
        missing = getattr(err, "name", None) if isinstance(err, ImportError) else None
        if missing is not None and missing.split(".")[0] == "cvnet" and module.startswith(missing):
            raise refuse("the install that registered it is stale: {} does not exist (it "
                         "moved); reinstall cvnet's host package: {}".format(missing,
                                                                               INSTALL_HINT),
                         stale=True)
        raise refuse("importing {} failed with {}: {}".format(module, type(err).__name__, err))
    for part in filter(None, attribute.split(".")):
        if not hasattr(loaded, part):
            raise refuse("the install that registered it is stale: {} has no {} (it moved); "
                         "reinstall cvnet's host package: {}".format(module, attribute,
                                                                     INSTALL_HINT), stale=True)
        loaded = getattr(loaded, part)
    return loaded
