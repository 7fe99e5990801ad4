"""Every console command's ``--help``: quick (no torch imported), plain text, real defaults only.

All commands run in one fresh interpreter, one after another, the way their console scripts call
them; after each, the test records whether torch has been imported so far, so the first command
that imports it is named.
"""

import json
import subprocess
import sys

import pytest

from tests.device_modules import ROOT

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

_RUN_ALL = """
import contextlib, importlib, io, json, sys
results = []
for command, target in json.loads(sys.argv[1]):
    module, function = target.split(":")
    sys.argv = [command, "--help"]
    out = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out):
        try:
            getattr(importlib.import_module(module), function)()
        except SystemExit as exit:
            code = exit.code
    results.append({"command": command, "exit": code, "help": out.getvalue(),
                    "torch": "torch" in sys.modules})
print(json.dumps(results))
"""


def _console_scripts():
    with open("{}/pyproject.toml".format(ROOT), "rb") as handle:
        return sorted(tomllib.load(handle)["project"]["scripts"].items())


@pytest.fixture(scope="module")
def helps():
    scripts = _console_scripts()
    result = subprocess.run([sys.executable, "-c", _RUN_ALL, json.dumps(scripts)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    assert result.returncode == 0, result.stderr
    return {entry["command"]: entry for entry in json.loads(result.stdout)}


def test_every_console_command_is_checked(helps):
    assert len(helps) >= 11 and {"cvnet-export", "cvnet-summary", "cvnet-bench"} <= set(helps)


@pytest.mark.parametrize("command", [name for name, _ in _console_scripts()])
def test_help_answers_without_importing_torch(helps, command):
    entry = helps[command]
    assert entry["exit"] == 0 and entry["help"].startswith("usage: {}".format(command))
    assert not entry["torch"], "{} --help imported torch".format(command)


@pytest.mark.parametrize("command", [name for name, _ in _console_scripts()])
def test_help_is_plain_text_with_real_defaults(helps, command):
    text = helps[command]["help"]
    for markup in ("``", ":func:`", ":mod:`", ":class:`"):
        assert markup not in text, "{} --help shows reST {!r}".format(command, markup)
    for empty in ("(default: None)", "(default: False)", "(default: [])", "(default: {})"):
        assert empty not in text, "{} --help says {}".format(command, empty)
    assert not any(line.rstrip().endswith("cvnet-") for line in text.splitlines()), \
        "{} --help splits a command name across lines".format(command)
