"""Inference by CUDA-graph replay: one captured graph per batch size, static input buffers.

At batch 1 a small network such as CVNet (hundreds of small kernels) spends more time
launching kernels than computing. A CUDA graph records the whole forward pass once and replays
it with one launch. :class:`GraphedModel` keeps one graph per *bucket* of batch sizes (powers
of two up to the largest batch): a batch of ``n`` images is copied into the first ``n`` rows of
its bucket's static input buffer, the graph is replayed, and the first ``n`` rows of the static
output are returned as a new tensor. Capture happens the first time a bucket is needed; the
graphs share one memory pool, which is safe because replays never overlap and every output is
copied out before the next replay.

The capture itself is injectable (``capture=``), so the bookkeeping runs and is tested on the
CPU; :class:`CudaGraphCapture` is the real one (side-stream warm-up, which also lets cuDNN's
autotuner pick its algorithms, then ``torch.cuda.graph`` on an explicit capture stream). Every
CUDA call of a capture and a replay runs with the model's GPU current (``cuda:1`` too), not
whichever GPU the calling thread had current: the memory pool, the streams and
``torch.cuda.graph``'s default capture stream all belong to the current device.

Example:
    >>> model = build_model("cvnet").cuda().half().eval().to(memory_format=torch.channels_last)
    >>> graphed = GraphedModel(model, sample_shape=(3, 256, 256), max_batch=32,
    ...                        device="cuda", dtype=torch.float16)
    >>> embeddings = graphed(batch)        # (n, 1024), any n <= 32; graphs captured on demand
"""

import logging
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError

logger = logging.getLogger(__name__)

#: Untimed forward passes on a side stream before a capture (allocations, cuDNN autotuning).
WARMUP_PASSES = 3


class Captured(NamedTuple):
    """A captured forward pass of one batch size.

    Attributes:
        static_input: The buffer the graph reads, (bucket, *sample_shape).
        static_output: The buffer the graph writes, (bucket, D).
        replay: Runs the graph once (reads ``static_input``, writes ``static_output``).
    """

    static_input: torch.Tensor
    static_output: torch.Tensor
    replay: Callable[[], None]


#: ``capture(model, static_input) -> Captured``: records ``model`` on the given input buffer.
CaptureFn = Callable[[nn.Module, torch.Tensor], Captured]


class CudaGraphCapture:
    """Captures CUDA graphs of a model on one GPU, all in one shared memory pool.

    Follows PyTorch's recipe (CUDA semantics, "Whole-network capture"): warm up on a side
    stream, then capture on a stream that is not the default one; here every step, the pool
    and the replay run under ``torch.cuda.device(device)``, with the streams made on
    ``device``.

    Args:
        device: The GPU the model and its static buffers are on, e.g. ``cuda:1``.
        warmup: Forward passes on a side stream before each capture.
        cuda: The ``torch.cuda`` module (a test's stand-in records what it is asked).
    """

    def __init__(self, device: Union[torch.device, str] = "cuda", warmup: int = WARMUP_PASSES,
                 cuda: Optional[Any] = None):
        self.device = torch.device(device)
        self.warmup = warmup
        self._cuda = cuda if cuda is not None else torch.cuda
        self._pool = None

    def __call__(self, model: nn.Module, static_input: torch.Tensor) -> Captured:
        cuda, device = self._cuda, self.device
        with cuda.device(device):  # the pool, the streams and the capture: on this GPU
            if self._pool is None:
                self._pool = cuda.graph_pool_handle()
            warmup = cuda.Stream(device=device)
            warmup.wait_stream(cuda.current_stream(device))
            with torch.no_grad():
                with cuda.stream(warmup):  # off the default stream, as capture needs
                    for _ in range(max(1, self.warmup)):
                        model(static_input)
                cuda.current_stream(device).wait_stream(warmup)
                graph = cuda.CUDAGraph()
                with cuda.graph(graph, pool=self._pool, stream=cuda.Stream(device=device)):
                    static_output = model(static_input)

        def replay() -> None:
            with cuda.device(device):
                graph.replay()

        return Captured(static_input, static_output, replay)


def eager_capture(model: nn.Module, static_input: torch.Tensor) -> Captured:
    """A stand-in "capture" that re-runs ``model`` eagerly at every replay (CPU, tests).

    It honours the contract of a real capture (the output buffer is fixed and overwritten by
    each replay), so the bookkeeping around it is exercised as on a GPU.
    """
    with torch.no_grad():
        static_output = model(static_input)

    def replay() -> None:
        with torch.no_grad():
            static_output.copy_(model(static_input))

    return Captured(static_input, static_output, replay)


def power_of_two_buckets(max_batch: int) -> Tuple[int, ...]:
    """1, 2, 4, ... up to ``max_batch`` (which is always the last bucket)."""
    buckets = []
    size = 1
    while size < max_batch:
        buckets.append(size)
        size *= 2
    return tuple(buckets) + (max_batch,)


class GraphedModel:
    """Runs an eval-mode model by graph replay, capturing one graph per batch-size bucket.

    The model must compute each row of its input independently (eval mode: true of every
    registered model), since a batch is padded up to its bucket.

    Args:
        model: The eval-mode model, already on ``device`` in its dtype and memory format.
        sample_shape: Shape of one input row, e.g. ``(3, 256, 256)``.
        max_batch: The largest batch to run.
        device: Where the static buffers live (``"cuda"``; ``"cpu"`` with a stand-in capture).
        dtype: dtype of the static input (the model's: float16 for an FP16 model).
        channels_last: Allocate 4-D input buffers in channels-last memory format.
        buckets: Batch sizes to capture; a batch runs in the smallest bucket that holds it.
            Default: powers of two up to ``max_batch``.
        capture: The capture function; default :class:`CudaGraphCapture` on ``device``.
    """

    def __init__(self, model: nn.Module, *, sample_shape: Sequence[int], max_batch: int,
                 device: str = "cuda", dtype: torch.dtype = torch.float32,
                 channels_last: bool = True, buckets: Optional[Sequence[int]] = None,
                 capture: Optional[CaptureFn] = None):
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last and len(self.sample_shape) == 3
        self.buckets = tuple(sorted(set(buckets or power_of_two_buckets(max_batch))))
        if self.buckets[-1] < max_batch:
            raise ConfigError(f"buckets {self.buckets} do not reach max_batch {max_batch}")
        self.max_batch = max_batch
        self._capture = capture or CudaGraphCapture(self.device)
        self._graphs: Dict[int, Captured] = {}

    @property
    def captured(self) -> List[int]:
        """The bucket sizes captured so far."""
        return sorted(self._graphs)

    def bucket(self, batch: int) -> int:
        """The bucket a batch of ``batch`` rows runs in."""
        if not 1 <= batch <= self.max_batch:
            raise ConfigError(f"a batch of {batch} is outside 1..{self.max_batch}, the range "
                              "this graphed model was set up for")
        return next(size for size in self.buckets if size >= batch)

    def _graph(self, size: int) -> Captured:
        if size not in self._graphs:
            buffer = torch.zeros((size,) + self.sample_shape, device=self.device,
                                 dtype=self.dtype)
            if self.channels_last:
                buffer = buffer.contiguous(memory_format=torch.channels_last)
            logger.info("capturing the forward pass for batch %d", size)
            self._graphs[size] = self._capture(self.model, buffer)
        return self._graphs[size]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Runs ``batch`` (n, *sample_shape), on any device and in any float dtype.

        Returns:
            (n, D) output, a new tensor on ``device`` (later calls do not change it).

        Raises:
            ConfigError: The batch's row shape differs from ``sample_shape`` or its length is
                outside 1..max_batch.
        """
        if tuple(batch.shape[1:]) != self.sample_shape:
            row = ", ".join(str(d) for d in self.sample_shape)
            raise ConfigError(f"expected a batch of shape (n, {row}), got {tuple(batch.shape)}")
        count = int(batch.shape[0])
        graph = self._graph(self.bucket(count))
        graph.static_input[:count].copy_(batch)  # casts and moves to the device
        graph.static_input[count:].zero_()  # padding rows: deterministic, and ignored
        graph.replay()
        return graph.static_output[:count].clone()
