"""Host plugins that do not load: no traceback, and the message tells the cases apart."""

import importlib

import pytest

from cvnet.core import plugins
from cvnet.core.plugins import RUNNERS, PluginError, load_plugin
from cvnet.engines import open_engine
from cvnet.engines.errors import MissingDependencyError

pytestmark = pytest.mark.device


class FakeEntryPoint(object):
    """An entry point as importlib.metadata gives it: ``module:attribute``, loaded on demand."""

    def __init__(self, name, value, failure=None):
        self.name, self.value, self.failure = name, value, failure

    def load(self):
        if self.failure is not None:
            raise self.failure
        module, attribute = self.value.split(":")
        return getattr(importlib.import_module(module), attribute)


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
    broken = RuntimeError("CUDA driver initialization failed")  # a broken torch, not an ImportError
    _registered(monkeypatch, FakeEntryPoint("pt", "cvnet.models.runner:TorchRunner", broken))
    with pytest.raises(PluginError, match="RuntimeError: CUDA driver initialization failed") \
            as caught:
        load_plugin(RUNNERS, "pt")
    assert not caught.value.stale
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="needs torch.*CUDA driver initialization"):
        open_engine(str(model))


def test_none_registered_says_how_to_install_the_host_package(monkeypatch, tmp_path):
    _registered(monkeypatch)
    assert load_plugin(RUNNERS, "pt") is None
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="no runner .* registered.*pip install -e ."):
        open_engine(str(model))
