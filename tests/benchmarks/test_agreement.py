"""cvnet-bench's agreement figures and fastest path: which rows may win, what they are compared
with, at which batch, and which targets an ``--engine`` file gets (no torch, no OpenVINO
needed: the targets are only described, the runners faked)."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import cvnet.engines
from cvnet.benchmarks import run as bench_run
from cvnet.benchmarks.agreement import Agreement, fastest_paths, row_fields
from cvnet.benchmarks.cli import main
from cvnet.benchmarks.report import BenchRow
from cvnet.benchmarks.run import (Target, backend_precisions, engine_targets, is_own_reference,
                                  measure, reference_of_file)
from cvnet.core.parity import ParityFigures
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device

QUICK = ["--min-time", "0", "--warmup", "1"]
OPTIONS = dict(threads=1, input_size=None, arch=None, batch_max=1)


def _row(backend, precision, throughput, cosine, top5, batch=1):
    fields = row_fields(ParityFigures(images=16, cosine_min=cosine, cosine_mean=cosine,
                                      max_abs_diff=0.0, top1_agreement=top5,
                                      top5_agreement=top5), precision)
    values = {name: None for name in BenchRow._fields}
    values.update(model="m", backend=backend, device="cpu", precision=precision, batch=batch,
                  mode="network", throughput=throughput, **fields)
    return BenchRow(**values)


def test_the_fastest_path_keeps_the_top5_rankings_at_every_precision():
    """An FP32 or FP16 row whose cosine passes but whose top-5 agreement is below 0.99 does not
    keep the rankings and cannot be named fastest."""
    rows = [_row("onnxruntime", "fp16", 90.0, 0.9995, 0.9),  # cosine passes fp16, rankings not
            _row("openvino", "fp32", 80.0, 0.99999, 0.9),    # the same for fp32
            _row("openvino", "bf16", 50.0, 0.998, 1.0),
            _row("onnxruntime", "fp32", 40.0, 1.0, 1.0)]
    assert [r.agrees for r in rows] == [False, False, True, True]
    assert fastest_paths(rows) == [{"batch": 1, "candidates": 4, "backend": "openvino",
                                    "precision": "bf16", "throughput": 50.0,
                                    "top5_agreement": 1.0}]
    rows.append(_row("torch", "fp32", 99.0, 1.0, 1.0)._replace(agrees=None))  # no figures
    assert fastest_paths(rows)[0]["backend"] == "openvino"


def test_the_reference_row_has_no_figures_and_an_fp16_graph_no_reference(tmp_path, capsys):
    ort = Target(model="", path="m.onnx", backend="onnxruntime", device="cpu",
                 precision="fp32", options={}, reference=("m.onnx", "onnxruntime"))
    assert is_own_reference(ort)
    assert not is_own_reference(ort._replace(backend="openvino"))
    assert not is_own_reference(ort._replace(reference=("m.pt", "torch-eager")))
    assert reference_of_file(TINY_ONNX, "openvino") == (TINY_ONNX, "onnxruntime")
    half = str(tmp_path / "half.onnx")
    shutil.copy(TINY_ONNX, half)
    copy_sidecar(half, graph_precision="fp16")
    assert reference_of_file(half, "onnxruntime") is None  # no FP32 reference for it here
    out = str(tmp_path / "bench.json")
    assert main(["--engine", TINY_ONNX, "--backend", "onnxruntime", "--batch", "1",
                 "--verify-images", "4", "--json-out", out] + QUICK) == 0
    with open(out) as handle:
        report = json.load(handle)
    assert [r["agrees"] for r in report["results"]] == [None]  # it cannot agree with itself
    assert report["fastest_cpu_path"] == []
    assert "FP32 graph" in report["settings"]["agreement_reference"]


def test_bf16_on_an_onnx_file_times_openvino(monkeypatch):
    """--precision bf16 without --backend: the file's own runtime (ONNX Runtime) is not asked
    for bf16, OpenVINO is."""
    targets = engine_targets(TINY_ONNX, backends=None, device=None, precision="bf16", **OPTIONS)
    assert [(t.backend, t.precision) for t in targets] == [("openvino", "bf16")]
    assert targets[0].options["check_agreement"] is False
    with pytest.raises(bench_run.BenchError, match="bf16 is OpenVINO's"):
        engine_targets(TINY_ONNX, backends=["onnxruntime"], device=None, precision="bf16",
                       **OPTIONS)


def test_engine_targets_and_backend_precisions(monkeypatch):
    import cvnet.engines.ov_runner as ov_runner

    monkeypatch.setattr(bench_run, "openvino_installed", lambda: False)
    targets = engine_targets(TINY_ONNX, backends=None, device=None, precision="auto", **OPTIONS)
    assert [(t.backend, t.precision) for t in targets] == [("onnxruntime", "fp32")]
    monkeypatch.setattr(bench_run, "openvino_installed", lambda: True)
    monkeypatch.setattr(ov_runner, "openvino_core", lambda *a: object())
    for bf16, expected in ((True, ["fp32", "bf16"]), (False, ["fp32"])):
        monkeypatch.setattr(ov_runner, "cpu_supports_bf16", lambda core, bf16=bf16: bf16)
        assert backend_precisions("openvino", "cpu", "auto") == expected
        targets = engine_targets(TINY_ONNX, backends=None, device=None, precision="auto",
                                 **OPTIONS)
        assert [(t.backend, t.precision) for t in targets] == (
            [("onnxruntime", "fp32")] + [("openvino", p) for p in expected])
        assert {t.reference for t in targets} == {(TINY_ONNX, "onnxruntime")}
    assert backend_precisions("onnxruntime", "cpu", "auto") == ["fp32"]
    assert backend_precisions("openvino", "cpu", "fp32") == ["fp32"]
    assert backend_precisions("torch", "cuda", "fp16") == ["fp16"]


class _BatchDependent(object):
    """A runner whose embeddings change with the batch size they are computed at: exact at
    batch 1, reversed rows (other neighbours) in any larger batch."""

    backend, precision, metadata = "openvino", "bf16", None
    spec = SimpleNamespace(batch_min=1, batch_max=4)

    def __init__(self, path, **options):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    def peak_gpu_memory_mb(self):
        return None

    def prepare(self, images):
        return np.stack([np.asarray(image, np.float32).reshape(-1)[:16] for image in images])

    def infer(self, batch):
        return batch[::-1].copy() if len(batch) > 1 else batch.copy()

    def embed(self, images):
        return self.prepare(images)


def test_agreement_is_measured_at_each_batch_size(monkeypatch):
    monkeypatch.setattr(cvnet.engines, "open_engine", _BatchDependent)
    agreement = Agreement(8, lambda path, backend: _BatchDependent(path))
    target = Target(model="m", path="m.onnx", backend="openvino", device="cpu",
                    precision="bf16", options={}, reference=("m.onnx", "onnxruntime"))
    rows = measure(target, [1, 4], warmup=0, min_time=0.0, agreement=agreement)
    by_batch = {row.batch: row for row in rows}
    assert by_batch[1].agrees is True and by_batch[1].top5_agreement == 1.0
    assert by_batch[4].agrees is False and by_batch[4].cosine_min < 0.99
