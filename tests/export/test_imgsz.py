"""cvnet-export exports at the size the checkpoint was trained at, and says so when told otherwise."""

import logging

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cvnet.core.artifact import read_sidecar  # noqa: E402
from cvnet.export.cli import main  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402

QUICK = ["--verify-images", "4", "--no-verify"]


@pytest.fixture(scope="module")
def trained_at_64(tmp_path_factory):
    """A cvnet_tiny checkpoint as cvnet-train writes it after the README's 64x64 recipe."""
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("run") / "model.pt")
    save_checkpoint(path, build_model("cvnet_tiny", num_classes=4), arch="cvnet_tiny",
                    model_kwargs={"num_classes": 4}, epoch=1, config={"img_size": 64, "lr": 0.1})
    return path


def _graph_input(path):
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return [dim.dim_value or dim.dim_param for dim in dims]


def test_a_64x64_checkpoint_exports_a_64x64_graph(trained_at_64, tmp_path, caplog):
    output = str(tmp_path / "model.onnx")
    with caplog.at_level(logging.INFO):
        assert main([trained_at_64, "-o", output] + QUICK) == 0
    meta = read_sidecar(output + ".json")
    assert (meta.input_height, meta.input_width) == (64, 64)
    assert _graph_input(output)[1:] == [3, 64, 64]
    assert "64x64" in caplog.text and not [r for r in caplog.records
                                           if r.levelno >= logging.WARNING and "input-size" in
                                           r.getMessage()]


def test_another_size_is_allowed_and_said_out_loud(trained_at_64, tmp_path, caplog):
    output = str(tmp_path / "model.onnx")
    assert main([trained_at_64, "-o", output, "--input-size", "32"] + QUICK) == 0
    assert _graph_input(output)[1:] == [3, 32, 32]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--input-size 32x32 differs from the 64x64" in w and trained_at_64 in w
               for w in warnings), warnings


def test_without_a_recorded_size_the_default_is_256():
    from cvnet.models.checkpoint import resolve_input_size

    assert resolve_input_size(None, None, "plain.pt") == (256, 256)
    assert resolve_input_size((128, 64), None, "plain.pt") == (128, 64)
    assert resolve_input_size(None, (96, 96), "model.pt") == (96, 96)
