"""PyTorch models (host side; imports torch on first use).

Example:
    >>> from cvnet.models import build_model
    >>> model = build_model("cvnet", num_classes=0).eval()
    >>> model(torch.randn(2, 3, 256, 256)).shape
    torch.Size([2, 1024])

The Table 2 baselines (``pplr``, ``mgn``, ``bot``, ``transreid``, ``starnet_s1``,
``mobileone_s1``, ``sbcformer_xs``, ``fasternet_t1``) are registered too; see
:mod:`cvnet.models.baselines`. ``list_models("cvnet*")`` lists the CVNet variants only.

Importing this package does not import torch: the names below are loaded when first used, so a
command under ``cvnet.models`` (``cvnet-summary``) answers ``--help`` without torch. The
registry loads the built-in models on its first lookup.
"""

import importlib

#: Public name -> the module that defines it.
_EXPORTS = {
    "CVNet": "cvnet.models.cvnet",
    "CVNetOutput": "cvnet.models.cvnet",
    "paper_ops": "cvnet.models.cvnet",
    "PAPER_OPS": "cvnet.models.dfc",
    "parse_ops": "cvnet.models.dfc",
    "build_model": "cvnet.models.registry",
    "list_models": "cvnet.models.registry",
    "model_description": "cvnet.models.registry",
    "register_model": "cvnet.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Loads a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
