"""``--device cuda:N`` reaches the PyTorch runner of cvnet-eval and cvnet-embed (needs torch; no
GPU needed: the runner is stopped where it would load the weights onto the GPU)."""

import pytest

torch = pytest.importorskip("torch")

from cvnet.core.cli import EXIT_ERROR  # noqa: E402
from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.core.synth import generate_dataset  # noqa: E402
from cvnet.jetson import eval_cli  # noqa: E402
from cvnet.jetson.cli import embed_parser, main  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402
from cvnet.models.runner import TorchRunner  # noqa: E402
from tests.fixtures import tiny_image_paths  # noqa: E402
from tests.fixtures.make_tiny_onnx import fixture_model  # noqa: E402


@pytest.fixture
def devices(monkeypatch):
    """The device each TorchRunner is activated on; activation stops there."""
    seen = []

    def activate(self):
        seen.append(self._device)
        raise ConfigError("stopped before loading onto {}".format(self._device))

    monkeypatch.setattr(TorchRunner, "_activate", activate)
    return seen


def test_both_commands_parse_a_gpu_number():
    assert eval_cli.build_parser().parse_args(["m.pt", "--data", "d", "--device",
                                               "CUDA:1"]).device == "cuda:1"
    assert embed_parser().parse_args(["--engine", "m.pt", "--images", "i", "-o", "o",
                                      "--device", "cuda:1"]).device == "cuda:1"
    for parse in (lambda d: eval_cli.build_parser().parse_args(["m.pt", "--device", d]),
                  lambda d: embed_parser().parse_args(["--engine", "m.pt", "--device", d])):
        for bad in ("cuda:", "cuda:x", "gpu", "cuda:-1"):
            with pytest.raises(SystemExit):
                parse(bad)


def test_the_pt_runner_receives_the_gpu(tmp_path, devices, caplog):
    model = str(tmp_path / "tiny.pt")
    save_checkpoint(model, fixture_model(), arch="cvnet_tiny", model_kwargs={"num_classes": 0})
    data = generate_dataset(str(tmp_path / "synth"), ids=4, images_per_view=1, size=32, seed=1)
    images = tmp_path / "images"
    images.mkdir()
    for path in tiny_image_paths()[:2]:
        (images / path.split("/")[-1]).write_bytes(open(path, "rb").read())
    assert main(["eval", model, "--data", data, "--device", "cuda:1"]) == EXIT_ERROR
    assert main(["embed", "--engine", model, "--images", str(images), "-o",
                 str(tmp_path / "store"), "--device", "cuda:1"]) == EXIT_ERROR
    assert devices == ["cuda:1", "cuda:1"]
    assert "stopped before loading onto cuda:1" in caplog.text
