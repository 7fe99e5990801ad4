"""Model registry: ``@register_model`` builders, looked up by name with ``build_model``.

The built-in models (the CVNet variants and the Table 2 baselines) register themselves when
their modules are imported; every lookup here imports them first, so the registry is complete
however it was reached.
"""

import fnmatch
import importlib
from typing import Callable, Dict, List

import torch.nn as nn

from cvnet.core.errors import ConfigError

_MODELS: Dict[str, Callable[..., nn.Module]] = {}
#: Modules whose import registers the built-in models.
_BUILTIN_MODULES = ("cvnet.models.cvnet", "cvnet.models.baselines")


def _load_builtin_models() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Registers a builder under its function name.

    Raises:
        ConfigError: A builder of the same name is already registered.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ConfigError(f"model {name!r} is registered twice ({_MODELS[name].__module__} and "
                          f"{fn.__module__}); rename one of the builders")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> List[str]:
    """Returns the registered model names that match a shell-style pattern, sorted.

    Args:
        pattern: ``fnmatch`` pattern; ``"cvnet*"`` lists the CVNet variants only (every CVNet
            builder's name starts with ``cvnet``), the default lists everything.
    """
    _load_builtin_models()
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def model_description(name: str) -> str:
    """Returns the first line of a registered builder's docstring."""
    doc = (_get_builder(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _get_builder(name: str) -> Callable[..., nn.Module]:
    _load_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def build_model(name: str, **kwargs) -> nn.Module:
    """Builds a registered model with freshly initialised weights.

    Args:
        name: A name from :func:`list_models`, e.g. ``"cvnet"``.
        **kwargs: Constructor options that override the variant's (``num_classes``, ``widths``,
            ``ops``...); see :class:`cvnet.models.cvnet.CVNet`.

    Raises:
        KeyError: ``name`` is not registered; the message lists the registered names.
    """
    return _get_builder(name)(**kwargs)
