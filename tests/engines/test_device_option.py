"""``open_engine(..., device=)``: one reading of a GPU for every runner, int or string."""

import pytest

from cvnet.core.errors import ConfigError
from cvnet.engines.gpu import device_ordinal
from cvnet.engines.trt_runner import TrtRunner

pytestmark = pytest.mark.device


@pytest.mark.parametrize("device, ordinal", [(1, 1), ("1", 1), ("cuda:1", 1), ("CUDA:2", 2),
                                             ("cuda", 0), (0, 0), ("cpu", None), (None, None)])
def test_every_spelling_of_a_device_reads_the_same(device, ordinal):
    assert device_ordinal(device) == ordinal


@pytest.mark.parametrize("device", ["gpu1", "cuda:x", -1, "cuda:-1", True])
def test_other_spellings_are_refused(device):
    with pytest.raises(ConfigError, match="cuda:N"):
        device_ordinal(device)


def test_the_tensorrt_runner_takes_cuda_n_as_the_torch_runner_does(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not read before activation")
    assert TrtRunner(str(plan), device="cuda:1")._device == 1
    assert TrtRunner(str(plan), device=1)._device == 1
    with pytest.raises(ConfigError, match="runs on a GPU"):
        TrtRunner(str(plan), device="cpu")
