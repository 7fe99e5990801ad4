"""The OpenVINO runner, for real, on the committed tiny cvnet graph.

Runs where OpenVINO installs (the host job installs it: x86-64, Python 3.10+; these tests also
passed under Python 3.6 with OpenVINO 2022.2.0); the device job (Python 3.6, the JetPack pins)
has no OpenVINO and skips the tests that run it, saying so. The
refusal of bf16 is tested against sidecars that record a failed, a passed and no agreement check;
tests/export/test_openvino_check.py makes a real failing check.
"""

import logging
import shutil
import sys

import numpy as np
import pytest

from cvnet.core.errors import ConfigError, MetadataError
from cvnet.core.parity import (FP32_MIN_COSINE, parity_figures, row_cosine,
                               runtime_check_record)
from cvnet.engines import backend_options, open_engine, runner_class
from cvnet.engines.errors import MissingDependencyError
from cvnet.engines.ov_runner import (OpenVinoRunner, PrecisionRefusedError, compile_config,
                                     precision_name)
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device

try:
    import openvino  # noqa: F401
    HAVE_OPENVINO = True
except ImportError:
    HAVE_OPENVINO = False
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO, reason="OpenVINO is not installed here: the device job keeps the JetPack "
                              "pins (the Nano has no OpenVINO wheel); the host job installs it")


def _bf16_cpu():
    from cvnet.engines.ov_runner import cpu_supports_bf16, openvino_core

    return cpu_supports_bf16(openvino_core())


def _record(precision, passed, version=None):
    """A sidecar record of an agreement check that passed or failed."""
    emb = np.random.RandomState(0).randn(8, 4)
    other = emb if passed else emb[::-1]  # reversed rows: other neighbours, low cosine
    if version is None:
        from cvnet.engines.ov_runner import openvino_version

        version = openvino_version() if HAVE_OPENVINO else "test"
    return runtime_check_record("openvino", precision, [parity_figures(emb, other, batch=1)],
                                reference="PyTorch FP32", backend_version=version,
                                device="CPU test")


class _Compiled(object):
    """A compiled model that reports ``precision`` as its INFERENCE_PRECISION_HINT."""

    def __init__(self, compiled, precision):
        self._compiled, self._precision = compiled, precision

    def get_property(self, name):
        if name == "INFERENCE_PRECISION_HINT":
            return self._precision
        return self._compiled.get_property(name)

    def __getattr__(self, name):
        return getattr(self._compiled, name)


class _Core(object):
    """OpenVINO's Core, except that the compiled model reports ``auto`` (no hint) as ``f16``,
    as the ARM builds do, and the bf16 hint as bf16 whatever this CPU has."""

    def __init__(self, core):
        self._core = core

    def __getattr__(self, name):  # read_model, get_property: the real ones
        return getattr(self._core, name)

    def compile_model(self, model, device, config):
        compiled = self._core.compile_model(model, device, dict(config, **{
            "INFERENCE_PRECISION_HINT": "f32"}))
        return _Compiled(compiled, config.get("INFERENCE_PRECISION_HINT", "f16"))


class ArmLikeRunner(OpenVinoRunner):
    def _core(self):
        return _Core(super(ArmLikeRunner, self)._core())


def _with_checks(tmp_path, *records):
    """The tiny graph with a sidecar whose verification holds ``records``."""
    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path, verification={"passed": True, "runtime_checks": list(records)})
    return path


def test_the_backend_is_chosen_by_name_for_an_onnx_file():
    assert runner_class(TINY_ONNX, "openvino") is OpenVinoRunner
    assert runner_class(TINY_ONNX).__name__ == "OrtRunner"  # ONNX Runtime stays the default
    with pytest.raises(ConfigError, match="opens .onnx files, not '.plan'"):
        runner_class("cvnet.plan", "openvino")
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        runner_class(TINY_ONNX, "tvm")
    with pytest.raises(ConfigError, match="--precision bf16 is OpenVINO's choice"):
        backend_options(TINY_ONNX, precision="bf16")
    assert backend_options(TINY_ONNX, backend="openvino", precision="bf16", threads=2) == {
        "backend": "openvino", "precision": "bf16", "threads": 2}
    assert backend_options("m.plan", threads=2) == {}  # a GPU engine has no CPU threads


def test_precision_and_threads_become_openvino_properties():
    assert compile_config("fp32", 1) == {"INFERENCE_PRECISION_HINT": "f32",
                                         "INFERENCE_NUM_THREADS": 1}
    assert compile_config("bf16", None) == {"INFERENCE_PRECISION_HINT": "bf16"}
    assert compile_config("auto", None) == {}  # OpenVINO decides
    with pytest.raises(Exception, match="fp32, bf16, auto"):
        OpenVinoRunner(TINY_ONNX, precision="fp16")
    assert [precision_name(v) for v in ("f32", "bf16", "bfloat16", "f16")] == [
        "fp32", "bf16", "bf16", "fp16"]


def test_a_missing_openvino_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails
    with pytest.raises(MissingDependencyError) as info:
        with open_engine(TINY_ONNX, backend="openvino"):
            pass
    assert "cvnet[openvino]" in str(info.value) and TINY_ONNX in str(info.value)


@needs_openvino
def test_fp32_embeddings_equal_onnx_runtime_and_pytorch(images, expected):
    with open_engine(TINY_ONNX, threads=1) as reference:
        ort = reference.embed(images)
    with open_engine(TINY_ONNX, backend="openvino", precision="fp32", threads=1) as runner:
        assert isinstance(runner, OpenVinoRunner) and runner.precision == "fp32"
        assert runner._compiled.get_property("INFERENCE_NUM_THREADS") == 1
        embeddings = runner.embed(images)
        assert runner.embed(images[:3]).shape == (3, 96)  # any batch up to the range
    assert embeddings.shape == (7, 96) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, ort, rtol=0, atol=1e-5)
    assert row_cosine(embeddings, expected["embeddings"]).min() >= FP32_MIN_COSINE


@needs_openvino
def test_auto_that_computes_f16_needs_a_passed_f16_check(tmp_path, caplog):
    """On ARM builds OpenVINO's own choice is f16: it is gated as bf16 is."""
    unchecked = _with_checks(tmp_path, _record("fp32", True), _record("bf16", True))
    with caplog.at_level(logging.WARNING):
        with ArmLikeRunner(unchecked) as runner:
            assert runner.precision == "fp32"  # no fp16 verdict: auto falls back
    assert "fp16 is not verified" in caplog.text and "running fp32 instead" in caplog.text
    (tmp_path / "ok").mkdir()
    checked = _with_checks(tmp_path / "ok", _record("fp32", True), _record("fp16", True))
    with ArmLikeRunner(checked) as runner:
        assert runner.precision == "fp16"
    (tmp_path / "bad").mkdir()
    failed = _with_checks(tmp_path / "bad", _record("fp16", False))
    with ArmLikeRunner(failed) as runner:
        assert runner.precision == "fp32"


@needs_openvino
def test_a_verdict_is_judged_from_its_figures_not_trusted(tmp_path, caplog):
    """A forged ``passed``, a record without figures: refused; another OpenVINO major: warned."""
    forged = dict(_record("bf16", False), passed=True)
    path = _with_checks(tmp_path, forged)
    with pytest.raises(PrecisionRefusedError, match="failed the agreement check"):
        ArmLikeRunner(path, precision="bf16").activate()
    (tmp_path / "empty").mkdir()
    empty = dict(_record("bf16", True), cases=[], passed=True)
    path = _with_checks(tmp_path / "empty", empty)
    with pytest.raises(PrecisionRefusedError, match="holds no figures"):
        ArmLikeRunner(path, precision="bf16").activate()
    (tmp_path / "old").mkdir()
    path = _with_checks(tmp_path / "old", _record("bf16", True, version="1999.1.0"))
    with caplog.at_level(logging.WARNING):
        with ArmLikeRunner(path, precision="bf16") as runner:
            assert runner.precision == "bf16"
    assert "made with OpenVINO 1999.1.0" in caplog.text


@needs_openvino
def test_bf16_runs_where_the_agreement_check_passed(tmp_path, images, expected):
    path = _with_checks(tmp_path, _record("fp32", True), _record("bf16", True))
    with open_engine(path, backend="openvino", precision="bf16") as runner:
        embeddings = runner.embed(images)
        computed = runner.precision
    with open_engine(path, backend="openvino") as runner:  # auto: OpenVINO's own choice
        assert runner.precision == computed
    assert computed == ("bf16" if _bf16_cpu() else "fp32")
    assert row_cosine(embeddings, expected["embeddings"]).min() > 0.995


@needs_openvino
def test_bf16_is_refused_where_the_agreement_check_failed(tmp_path, caplog):
    if not _bf16_cpu():
        pytest.skip("this CPU computes no BF16, so OpenVINO never picks it here")
    path = _with_checks(tmp_path, _record("bf16", False))
    with pytest.raises(PrecisionRefusedError) as info:
        open_engine(path, backend="openvino", precision="bf16").activate()
    message = str(info.value)
    assert "failed the agreement check" in message and "top-5 agreement" in message
    assert "--precision fp32" in message
    with caplog.at_level(logging.WARNING):
        with open_engine(path, backend="openvino", precision="auto") as runner:
            assert runner.precision == "fp32"  # auto falls back instead of refusing
    assert "running fp32 instead" in caplog.text
    with open_engine(path, backend="openvino", precision="bf16",
                     check_agreement=False) as runner:  # a benchmark measures it itself
        assert runner.precision == "bf16"


@needs_openvino
def test_bf16_without_a_check_is_refused_with_the_way_to_run_it(tmp_path):
    if not _bf16_cpu():
        pytest.skip("this CPU computes no BF16, so OpenVINO never picks it here")
    with pytest.raises(PrecisionRefusedError, match="--verify-backend openvino"):
        open_engine(TINY_ONNX, backend="openvino", precision="bf16").activate()
    with open_engine(TINY_ONNX, backend="openvino") as runner:
        assert runner.precision == "fp32"


@needs_openvino
def test_a_sidecar_of_another_file_is_refused(tmp_path):
    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path, onnx_sha256="0" * 64)  # its verdicts would be about another graph
    with pytest.raises(MetadataError, match="does not match its sidecar"):
        open_engine(path, backend="openvino").activate()


@needs_openvino
def test_eval_and_embed_run_openvino_with_the_same_results(tmp_path, capsys):
    import json
    import os

    from cvnet.jetson.cli import main as jetson_main
    from tests.jetson.test_eval import _dataset

    data = _dataset(tmp_path)
    reports = {}
    for backend in ("onnxruntime", "openvino"):
        out = str(tmp_path / "{}.json".format(backend))
        assert jetson_main(["eval", TINY_ONNX, "--data", data, "--json-out", out, "--backend",
                            backend, "--precision", "fp32", "--threads", "1"]) == 0
        with open(out) as handle:
            reports[backend] = json.load(handle)["metrics"]
    assert "(openvino, fp32, 64x64)" in capsys.readouterr().out
    assert reports["openvino"].keys() == reports["onnxruntime"].keys()
    for protocol, metrics in reports["onnxruntime"].items():
        for name, value in metrics.items():  # scalars, and [low, high] intervals
            assert reports["openvino"][protocol][name] == pytest.approx(value, abs=1e-6), (
                protocol, name)
    folder = str(tmp_path / "emb")
    assert jetson_main(["embed", "--engine", TINY_ONNX, "--images", str(tmp_path), "-o", folder,
                        "--backend", "openvino", "--precision", "fp32"]) == 0
    with open(os.path.join(folder, "meta.json")) as handle:
        meta = json.load(handle)
    assert (meta["backend"], meta["precision"]) == ("openvino", "fp32")
    assert jetson_main(["embed", "--engine", TINY_ONNX, "--images", str(tmp_path), "-o",
                        str(tmp_path / "x"), "--precision", "bf16"]) == 1  # ONNX Runtime's is fp32
