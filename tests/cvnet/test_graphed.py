"""CUDA-graph replay: the per-batch-size bookkeeping on the CPU (a stand-in capture), the real
capture and the fast PyTorch runner on a GPU (marked ``gpu``, skipped without one)."""

import contextlib
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402
from cvnet.models.graphed import (CudaGraphCapture, GraphedModel, eager_capture,  # noqa: E402
                                  power_of_two_buckets)
from cvnet.models.runner import TorchRunner  # noqa: E402

SHAPE = (3, 32, 32)
NO_GPU = not torch.cuda.is_available()
FEWER_THAN_TWO_GPUS = torch.cuda.device_count() < 2


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


class RecordingCuda(object):
    """A stand-in ``torch.cuda`` that records, for each call, the device it names and the
    device current then (the calling thread starts on cuda:0, as it would)."""

    def __init__(self):
        self.current = torch.device("cuda:0")
        self.calls = []

    @contextlib.contextmanager
    def device(self, device):
        before, self.current = self.current, torch.device(device)
        try:
            yield
        finally:
            self.current = before

    def graph_pool_handle(self):
        self.calls.append(("pool", self.current))
        return "pool"

    def Stream(self, device=None):  # noqa: N802 - torch.cuda's name
        stream = types.SimpleNamespace(device=torch.device(device) if device else self.current,
                                       wait_stream=lambda other: None)
        self.calls.append(("new stream", stream.device))
        return stream

    def current_stream(self, device=None):
        return types.SimpleNamespace(device=torch.device(device) if device else self.current,
                                     wait_stream=lambda other: None)

    @contextlib.contextmanager
    def stream(self, stream):
        self.calls.append(("warm-up", stream.device, self.current))
        yield

    def CUDAGraph(self):  # noqa: N802 - torch.cuda's name
        return types.SimpleNamespace(replay=lambda: self.calls.append(("replay", self.current)))

    @contextlib.contextmanager
    def graph(self, graph, pool=None, stream=None):
        self.calls.append(("capture", stream.device if stream else "default stream", pool,
                           self.current))
        yield


def test_a_capture_runs_on_the_gpu_of_its_model_not_the_current_one(model):
    """cuda:1 while the thread's current GPU is cuda:0: the pool, both streams, the capture
    (on an explicit stream, never torch.cuda.graph's default one) and every replay are on
    cuda:1."""
    cuda = RecordingCuda()
    gpu1 = torch.device("cuda:1")
    captured = CudaGraphCapture("cuda:1", warmup=2, cuda=cuda)(model, torch.zeros(1, *SHAPE))
    assert cuda.calls == [("pool", gpu1), ("new stream", gpu1), ("warm-up", gpu1, gpu1),
                          ("new stream", gpu1), ("capture", gpu1, "pool", gpu1)]
    assert cuda.current == torch.device("cuda:0")  # given back
    captured.replay()
    assert cuda.calls[-1] == ("replay", gpu1)


def test_the_graphed_model_captures_on_its_own_device(model):
    graphed = GraphedModel(model, sample_shape=SHAPE, max_batch=2, device="cuda:1")
    assert graphed._capture.device == torch.device("cuda:1")


def test_the_runner_asks_its_own_gpu_for_memory_and_synchronisation(monkeypatch, tmp_path):
    """``device="cuda:1"``: peak-memory reset, peak memory and synchronisation name GPU 1
    (without a device they act on the current GPU, cuda:0)."""
    from cvnet.models import threads

    monkeypatch.setattr(threads, "_STATE", threads._State())  # this test's thread choice only
    asked = []
    for name in ("reset_peak_memory_stats", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None, name=name: asked.append(
            (name, device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device=None: asked.append(("max_memory_allocated", device)) or 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    stub = types.SimpleNamespace(embedding_dim=96)
    stub.to = stub.eval = stub.half = lambda *args, **kwargs: stub
    monkeypatch.setattr("cvnet.models.runner.model_from_checkpoint",
                        lambda *args, **kwargs: (stub, types.SimpleNamespace(config={})))
    path = str(tmp_path / "model.pt")
    save_checkpoint(path, build_model("cvnet_tiny"), arch="cvnet_tiny")  # read by the stub
    runner = TorchRunner(path, device="cuda:1", cuda_graphs=False, threads=1)
    runner._activate()
    runner.synchronize()
    assert runner.peak_gpu_memory_mb() == 0.0
    gpu1 = torch.device("cuda:1")
    assert asked == [("reset_peak_memory_stats", gpu1), ("synchronize", gpu1),
                     ("max_memory_allocated", gpu1)]
    with pytest.raises(ConfigError, match=r"device cuda:2, but torch sees 2 GPU\(s\)"):
        TorchRunner(path, device="cuda:2", threads=1)._activate()


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


@pytest.mark.gpu
@pytest.mark.skipif(FEWER_THAN_TWO_GPUS, reason="needs two CUDA GPUs (torch sees {})".format(
    torch.cuda.device_count()))
def test_graphs_and_the_runner_on_the_second_gpu(model, tmp_path):
    """cuda:1 with cuda:0 current: the graphs replay what eager computes, on GPU 1, and the
    runner's peak memory is GPU 1's."""
    from cvnet.engines import open_engine

    assert torch.cuda.current_device() == 0
    gpu1 = build_model("cvnet_tiny").eval().to("cuda:1")
    gpu1.load_state_dict(model.state_dict())
    graphed = GraphedModel(gpu1.to(memory_format=torch.channels_last), sample_shape=SHAPE,
                           max_batch=4, device="cuda:1")
    batch = torch.randn(3, *SHAPE)
    with torch.no_grad():
        output = graphed(batch)
        expected = model(batch)
    assert output.device == torch.device("cuda:1")
    torch.testing.assert_close(output.cpu(), expected, rtol=1e-3, atol=1e-3)
    path = str(tmp_path / "tiny.pt")
    save_checkpoint(path, model, arch="cvnet_tiny")
    with open_engine(path, device="cuda:1", input_size=(32, 32)) as runner:
        runner.infer(np.zeros((2, 3, 32, 32), np.float32))
        runner.synchronize()
        assert runner.peak_gpu_memory_mb() > 0
        assert runner.peak_gpu_memory_mb() == round(
            torch.cuda.max_memory_allocated("cuda:1") / 2**20, 1)

