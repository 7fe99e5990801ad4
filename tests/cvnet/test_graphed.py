"""CUDA-graph replay: the per-batch-size bookkeeping on the CPU (a stand-in capture), the real
capture and the fast PyTorch runner on a GPU (marked ``gpu``, skipped without one)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402
from cvnet.models.graphed import GraphedModel, eager_capture, power_of_two_buckets  # noqa: E402

SHAPE = (3, 32, 32)
NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("cvnet_tiny").eval()


def counting(capture):
    """A capture function that records the batch size of every capture."""
    sizes = []

    def wrapped(model, static_input):
        sizes.append(len(static_input))
        return capture(model, static_input)

    wrapped.sizes = sizes
    return wrapped


def test_buckets_are_powers_of_two_up_to_the_largest_batch():
    assert power_of_two_buckets(1) == (1,)
    assert power_of_two_buckets(8) == (1, 2, 4, 8)
    assert power_of_two_buckets(40) == (1, 2, 4, 8, 16, 32, 40)


def test_each_bucket_is_captured_once_and_outputs_equal_eager(model):
    capture = counting(eager_capture)
    graphed = GraphedModel(model, sample_shape=SHAPE, max_batch=8, device="cpu",
                           channels_last=True, capture=capture)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, *SHAPE, generator=generator) for n in (1, 3, 4, 5, 3, 8, 1)]
    outputs = []
    with torch.no_grad():
        for batch in batches:
            outputs.append(graphed(batch))
            expected = model(batch)
            torch.testing.assert_close(outputs[-1], expected, rtol=1e-4, atol=1e-5)
    assert capture.sizes == [1, 4, 8] and graphed.captured == [1, 4, 8]
    # every result is its own tensor: later replays did not overwrite the first one
    with torch.no_grad():
        torch.testing.assert_close(outputs[0], model(batches[0]), rtol=1e-4, atol=1e-5)
    assert outputs[0].data_ptr() != outputs[-1].data_ptr()


def test_inputs_are_copied_into_channels_last_static_buffers_of_the_model_dtype(model):
    seen = []

    def capture(module, static_input):
        seen.append(static_input)
        return eager_capture(module, static_input)

    graphed = GraphedModel(model, sample_shape=SHAPE, max_batch=4, device="cpu",
                           dtype=torch.float32, capture=capture)
    with torch.no_grad():
        graphed(torch.ones(3, *SHAPE, dtype=torch.float64))  # cast on the way in
    (buffer,) = seen
    assert buffer.shape == (4,) + SHAPE and buffer.dtype == torch.float32
    assert buffer.is_contiguous(memory_format=torch.channels_last)
    assert torch.all(buffer[:3] == 1) and torch.all(buffer[3] == 0)  # padding row zeroed


def test_bad_batches_are_refused_before_any_capture(model):
    capture = counting(eager_capture)
    graphed = GraphedModel(model, sample_shape=SHAPE, max_batch=4, device="cpu",
                           capture=capture)
    with pytest.raises(ConfigError, match=r"outside 1..4"):
        graphed(torch.zeros(5, *SHAPE))
    with pytest.raises(ConfigError, match=r"expected a batch of shape \(n, 3, 32, 32\)"):
        graphed(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ConfigError, match="do not reach max_batch"):
        GraphedModel(model, sample_shape=SHAPE, max_batch=8, buckets=(1, 4))
    assert capture.sizes == []


# --- on a GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_graph_replay_equals_eager_on_a_gpu(model):
    cuda = build_model("cvnet_tiny").eval().cuda()
    cuda.load_state_dict(model.state_dict())
    cuda = cuda.to(memory_format=torch.channels_last)
    graphed = GraphedModel(cuda, sample_shape=SHAPE, max_batch=8, device="cuda")
    batch = torch.randn(5, *SHAPE)
    with torch.no_grad():
        expected = model(batch)
        first, second = graphed(batch), graphed(batch.cuda())
    assert graphed.captured == [8]
    torch.testing.assert_close(first.cpu(), expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(second, first)


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_fast_fp16_runner_matches_eager_fp32_on_a_gpu(tmp_path):
    """The paper's CVNet at 256x256: CUDA graphs in FP16 against eager FP32, per embedding."""
    from cvnet.engines import open_engine

    torch.manual_seed(0)
    path = str(tmp_path / "cvnet.pt")
    model = build_model("cvnet").eval()
    for module in model.modules():  # a trained attention op (gamma 0 is the identity)
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)
    save_checkpoint(path, model, arch="cvnet")
    batch = np.random.default_rng(0).standard_normal((3, 3, 256, 256)).astype(np.float32)
    with open_engine(path, device="cuda", cuda_graphs=False) as eager, \
            open_engine(path, device="cuda", half=True) as fast:
        assert (eager.backend, fast.backend) == ("pytorch", "pytorch-graphs")
        reference, graphed = eager.infer(batch), fast.infer(batch)
        assert np.array_equal(fast.infer(batch), graphed)  # replay is deterministic
    cosine = (reference * graphed).sum(1) / (np.linalg.norm(reference, axis=1)
                                              * np.linalg.norm(graphed, axis=1))
    assert cosine.min() > 0.999, cosine
