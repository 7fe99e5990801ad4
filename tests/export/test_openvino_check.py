"""The export's agreement check on OpenVINO: fp32 and bf16 against PyTorch FP32, the verdicts in
the sidecar, and a precision that fails it refused by the runner.

The failing case is real: a model whose embeddings differ only in what BF16 rounds away (its
input is offset by 256, where BF16's 8 significant bits keep steps of 2), so BF16 keeps the
cosine (0.99999) and loses the rankings (top-5 agreement 25%).
"""

import os
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install cvnet[openvino])")

import torch.nn as nn  # noqa: E402

from cvnet.core.artifact import read_sidecar  # noqa: E402
from cvnet.core.parity import find_runtime_check, verification_images  # noqa: E402
from cvnet.core.preprocess import PreprocessConfig  # noqa: E402
from cvnet.engines import open_engine  # noqa: E402
from cvnet.engines.ov_runner import (PrecisionRefusedError, cpu_supports_bf16,  # noqa: E402
                                     openvino_core)
from cvnet.export.cli import main  # noqa: E402
from cvnet.export.onnx_export import onnx_from_module  # noqa: E402
from cvnet.export.verify import verify_openvino  # noqa: E402
from tests.fixtures import TINY_ONNX, copy_sidecar  # noqa: E402

BF16_CPU = cpu_supports_bf16(openvino_core())
needs_bf16 = pytest.mark.skipif(not BF16_CPU, reason="this CPU computes no BF16 (OpenVINO's "
                                                     "OPTIMIZATION_CAPABILITIES lack BF16)")


class OffsetEmbedder(nn.Module):
    """(N, 3, 16, 16) -> (N, 32): a linear map of the input offset by 256."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 16 * 16, 32)

    def forward(self, x):
        return self.fc((x + 256.0).flatten(1))


def _check(precision):
    model = OffsetEmbedder().eval()
    graph = onnx_from_module(model, input_shape=(2, 3, 16, 16)).SerializeToString()
    return verify_openvino(graph, model, verification_images(16), precision=precision,
                           config=PreprocessConfig(16, 16), batches=[1, 8])


def test_fp32_passes_the_check_on_a_graph_bf16_breaks():
    record = _check("fp32")
    assert record["passed"] and record["precision"] == "fp32"
    assert [case["batch"] for case in record["cases"]] == [1, 8]
    assert all(case["top5_agreement"] == 1.0 for case in record["cases"])


@needs_bf16
def test_a_failing_precision_is_recorded_and_refused(tmp_path):
    record = _check("bf16")
    assert record["precision"] == "bf16" and record["passed"] is False
    worst = min(record["cases"], key=lambda case: case["top5_agreement"])
    assert worst["cosine_min"] > 0.995 and worst["top5_agreement"] < 0.99  # rankings, not cosine
    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path, verification={"passed": True, "runtime_checks": [record]})
    with pytest.raises(PrecisionRefusedError, match="failed the agreement check"):
        open_engine(path, backend="openvino", precision="bf16").activate()


def test_export_records_openvino_verdicts_and_the_runner_follows_them(tmp_path, capsys):
    out = str(tmp_path / "tiny.onnx")
    assert main(["--random-init", "--arch", "cvnet_tiny", "--input-size", "32",
                 "--verify-images", "8", "-o", out, "--verify-backend",
                 "onnxruntime,openvino"]) == 0
    assert "openvino fp32: passed" in capsys.readouterr().out
    verification = read_sidecar(out).verification
    assert find_runtime_check(verification, "openvino", "fp32")["passed"]
    bf16 = find_runtime_check(verification, "openvino", "bf16")
    assert (bf16 is not None) == BF16_CPU
    with open_engine(out, backend="openvino", precision="auto") as runner:
        assert runner.precision == ("bf16" if BF16_CPU and bf16["passed"] else "fp32")


def test_the_openvino_check_needs_verification(tmp_path, caplog):
    out = str(tmp_path / "tiny.onnx")
    assert main(["--random-init", "--arch", "cvnet_tiny", "--input-size", "32", "--no-verify",
                 "-o", out, "--verify-backend", "openvino"]) == 1
    assert "--no-verify skips" in caplog.text and not os.path.exists(out)


def test_the_export_checks_what_auto_computes_too(monkeypatch):
    """Where OpenVINO's own choice is neither fp32 nor bf16 (f16 on ARM builds), the export
    checks ``auto`` too, so the runner finds a verdict for what it will compute."""
    import cvnet.engines.ov_runner as ov_runner
    from cvnet.export.pipeline import check_openvino
    from cvnet.export.verify import openvino_precisions
    from tests.engines.test_ov_runner import _Core

    real = ov_runner.openvino_core
    monkeypatch.setattr(ov_runner, "openvino_core", lambda *a: _Core(real(*a)))
    model = OffsetEmbedder().eval()
    graph = onnx_from_module(model, input_shape=(2, 3, 16, 16)).SerializeToString()
    bf16 = ["bf16"] if BF16_CPU else []
    assert openvino_precisions(graph) == ["fp32"] + bf16 + ["auto"]
    records = check_openvino(graph, model, verification_images(8),
                             dict(config=PreprocessConfig(16, 16), batches=[1]))
    assert [record["precision"] for record in records] == ["fp32"] + bf16 + ["fp16"]
