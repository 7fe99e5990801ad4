"""self-check: versions off Jetson, and the fix when TensorRT is missing."""

import pytest

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


def test_missing_tensorrt_fails_with_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(selfcheck, "l4t_release", lambda path=None: "32.7.1")
    monkeypatch.setattr(selfcheck, "probe", lambda module: "not importable (No module named "
                        "{!r})".format(module) if module in ("tensorrt", "pycuda") else "1.0")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert main(["self-check"]) == 1
    out = capsys.readouterr().out
    assert "JetPack      4.6.1" in out
    assert "--runtime nvidia" in out and "pycuda==2022.1" in out
    assert "OPENBLAS_CORETYPE=ARMV8" in out


def test_console_scripts_and_delegation(capsys):
    from cvnet.jetson.cli import embed_main, match_main

    for entry in (embed_main, match_main):
        with pytest.raises(SystemExit) as exit_info:
            entry(["--help"])
        assert exit_info.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["env"]) == 0  # handed to python3 -m cvnet.engines env
    assert "numpy" in capsys.readouterr().out
