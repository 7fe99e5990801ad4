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
"""

import logging
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)

#: Runners for model files by suffix without the dot (``pt`` -> a Runner class).
RUNNERS = "cvnet.runners"
#: cvnet-bench's host abilities (``prepare_model``: an untrained model exported for a default run).
BENCH = "cvnet.bench"


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
    """The object the entry point ``name`` of ``group`` names, or None when none is installed.

    Raises:
        ImportError: The plugin is installed but cannot be imported here (e.g. torch is
            missing); the caller turns it into its refusal.
    """
    point = entry_points(group).get(name)
    if point is None:
        return None
    logger.debug("loading %s plugin %s = %s", group, name, point.value)
    return point.load()
