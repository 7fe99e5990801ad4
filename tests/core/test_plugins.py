"""Host plugins that do not load: no traceback, and the message tells the cases apart."""

import importlib
import sys

import pytest

from cvnet.core import plugins
from cvnet.core.plugins import RUNNERS, PluginError, load_plugin
from cvnet.engines import open_engine
from cvnet.engines.errors import MissingDependencyError

pytestmark = pytest.mark.device


class FakeEntryPoint(object):
    """An entry point as importlib.metadata gives it: ``module:attribute``, loaded on demand."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def load(self):
        module, attribute = self.value.split(":")
        return getattr(importlib.import_module(module), attribute)


def _broken_module(monkeypatch, tmp_path, name, body):
    """A module on sys.path whose import runs ``body`` (a broken host library)."""
    (tmp_path / (name + ".py")).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def _registered(monkeypatch, *points):
    monkeypatch.setattr(plugins, "entry_points", lambda group: {p.name: p for p in points})


def test_a_registration_naming_a_moved_module_is_called_stale(monkeypatch, tmp_path):
    _registered(monkeypatch, FakeEntryPoint("pt", "cvnet.models.moved_away:TorchRunner"))
    with pytest.raises(PluginError) as caught:
        load_plugin(RUNNERS, "pt")
    assert caught.value.stale
    assert "stale" in str(caught.value) and "pip install -e ." in str(caught.value)
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="stale.*pip install -e"):
        open_engine(str(model))


def test_a_missing_attribute_is_stale_too(monkeypatch):
    _registered(monkeypatch, FakeEntryPoint("pt", "cvnet.core.plugins:NoSuchRunner"))
    with pytest.raises(PluginError, match="stale") as caught:
        load_plugin(RUNNERS, "pt")
    assert caught.value.stale


def test_any_import_failure_of_a_present_plugin_is_its_error(monkeypatch, tmp_path):
    # A broken torch: not an ImportError.
    _broken_module(monkeypatch, tmp_path, "fake_torch_runner",
                   "raise RuntimeError('CUDA driver initialization failed')\n")
    _registered(monkeypatch, FakeEntryPoint("pt", "fake_torch_runner:TorchRunner"))
    with pytest.raises(PluginError, match="RuntimeError: CUDA driver initialization failed") \
            as caught:
        load_plugin(RUNNERS, "pt")
    assert not caught.value.stale
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="needs torch.*CUDA driver initialization"):
        open_engine(str(model))


def test_an_attribute_error_inside_the_import_is_not_called_stale(monkeypatch, tmp_path):
    """A broken numpy or torch raises AttributeError while importing (``np.float`` removed,
    a half-upgraded torch); that is its error, not a stale install."""
    _broken_module(monkeypatch, tmp_path, "fake_host_runner",
                   "import os\nos.no_such_function()\nclass TorchRunner: pass\n")
    _registered(monkeypatch, FakeEntryPoint("pt", "fake_host_runner:TorchRunner"))
    with pytest.raises(PluginError) as caught:
        load_plugin(RUNNERS, "pt")
    assert not caught.value.stale and "stale" not in str(caught.value)
    assert "AttributeError: module 'os' has no attribute 'no_such_function'" in str(caught.value)


def test_none_registered_says_how_to_install_the_host_package(monkeypatch, tmp_path):
    _registered(monkeypatch)
    assert load_plugin(RUNNERS, "pt") is None
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="no runner .* registered.*pip install -e ."):
        open_engine(str(model))
