"""self-check: versions off Jetson, and the fix when TensorRT is missing or broken."""

import importlib

import pytest

from cvnet.engines.machine import MISSING, OK, UNUSABLE, Probe, probe

from cvnet.jetson import selfcheck
from cvnet.jetson.cli import main

pytestmark = pytest.mark.device


def test_l4t_release_parsing(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: "
                       "aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    assert selfcheck.l4t_release(str(release)) == "32.7.1"
    assert selfcheck.JETPACK_OF_L4T["32.7.1"] == "4.6.1"
    assert selfcheck.l4t_release(str(tmp_path / "missing")) is None


def test_report_lists_every_version(capsys):
    status = main(["self-check", "--require", "none"])
    out = capsys.readouterr().out
    for name in ("L4T", "JetPack", "TensorRT", "CUDA", "Python", "numpy", "OpenCV", "onnxruntime",
                 "GPU", "power mode"):
        assert name in out
    assert status == 0


def importer(fails):
    """Imports as ``import`` does, except the modules of ``fails`` (name -> exception)."""
    def import_module(module):
        if module in fails:
            raise fails[module]
        return importlib.import_module(module)

    return import_module


def test_missing_tensorrt_fails_with_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(selfcheck, "l4t_release", lambda path=None: "32.7.1")
    missing = importer({module: ImportError("No module named {!r}".format(module))
                        for module in ("tensorrt", "pycuda")})
    monkeypatch.setattr(selfcheck, "probe", lambda module, _: probe(module, missing))
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert main(["self-check"]) == 1
    out = capsys.readouterr().out
    assert "JetPack      4.6.1" in out
    assert "--runtime nvidia" in out and "pycuda==2022.1" in out
    assert "OPENBLAS_CORETYPE=ARMV8" in out


@pytest.mark.parametrize("require, broken", [
    ("tensorrt", "tensorrt"),  # libnvinfer.so.8 not mounted into the container
    ("onnxruntime", "onnxruntime"),
    ("any", "onnxruntime"),  # and TensorRT missing: no backend at all
])
def test_a_backend_that_is_installed_but_fails_to_import_fails_the_check(require, broken):
    """An import that raises something else than ImportError (an OSError from a shared
    library) is a broken backend, not a working one: the check fails and says why."""
    error = OSError("libnvinfer.so.8: cannot open shared object file: No such file or directory")
    fails = {broken: error}
    if require == "any":
        fails["tensorrt"] = ImportError("No module named 'tensorrt'")
    text, status = selfcheck.self_check(require, importer=importer(fails))
    assert status == 1
    assert "unusable (OSError: libnvinfer.so.8: cannot open shared object file" in text
    assert "installed but fails to import" in text and "[MISSING]" in text


def test_probe_says_what_an_import_found():
    assert probe("json").status == OK
    assert probe("cvnet_no_such_module").status == MISSING
    broken = probe("tensorrt", importer({"tensorrt": OSError("libcudart.so.10.2: cannot open")}))
    assert broken == Probe(UNUSABLE, "unusable (OSError: libcudart.so.10.2: cannot open)")


def test_console_scripts_and_delegation(capsys):
    from cvnet.jetson.cli import embed_main, match_main

    for entry in (embed_main, match_main):
        with pytest.raises(SystemExit) as exit_info:
            entry(["--help"])
        assert exit_info.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["env"]) == 0  # handed to python3 -m cvnet.engines env
    assert "numpy" in capsys.readouterr().out
