"""What gpu-check runs: its settings (full, or tiny for ``--smoke``) and each step's command line.

Every step is one of cvnet's own commands run as ``python -m <module> ...``, exactly what a user
would type, so the check proves the commands and not a private code path.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple


@dataclass(frozen=True)
class CheckSettings:
    """The sizes of one gpu-check run.

    Attributes:
        device: ``cuda`` (the real check) or ``cpu`` (``--smoke`` only).
        smoke: Tiny settings that prove the orchestration, not the GPU; the mAP rise is
            reported but not required.
        tests: pytest paths searched for ``gpu`` and ``trt`` tests.
        synth_ids: Identities of the synthetic set (half train, half test).
        synth_size: Its image side, pixels.
        images_per_view: Images per identity and view.
        arch: The model trained.
        img_size: Training and evaluation input side, pixels.
        batch_size: Training batch, P x K.
        num_instances: K.
        epochs: Training epochs.
        lr: SGD learning rate (cosine schedule after ``warmup_epochs``).
        warmup_epochs: Linear warm-up epochs.
        pad: Padding of the random crop, pixels.
        workers: Data-loading processes.
        max_steps_per_epoch: Cap on training steps per epoch (0 = full epochs).
        bench_arch: The model cvnet-bench times besides the baselines.
        bench_input: Its input side, pixels.
        bench_batches: Batch sizes timed.
        bench_backends: cvnet-bench backends (``torch`` = CUDA graphs on a GPU).
        bench_min_time: Seconds timed per configuration.
        bench_warmup: Untimed batches first (CUDA graphs are captured here).
        baselines: Also time the Table 2 baselines.
    """

    device: str = "cuda"
    smoke: bool = False
    tests: Tuple[str, ...] = ("tests",)
    synth_ids: int = 100
    synth_size: int = 256
    images_per_view: int = 4
    arch: str = "cvnet"
    img_size: int = 256
    batch_size: int = 64
    num_instances: int = 4
    epochs: int = 40
    lr: float = 0.035
    warmup_epochs: int = 3
    pad: int = 10
    workers: int = 4
    max_steps_per_epoch: int = 0
    bench_arch: str = "cvnet"
    bench_input: int = 256
    bench_batches: Tuple[int, ...] = (1, 8, 32)
    bench_backends: Tuple[str, ...] = ("torch", "torch-eager")
    bench_min_time: float = 1.0
    bench_warmup: int = 5
    baselines: bool = True

    @property
    def precision(self) -> str:
        """The benchmark's precision: FP16 on a GPU, FP32 on the CPU."""
        return "fp16" if self.device == "cuda" else "fp32"


def smoke_settings(device: str, tests: Tuple[str, ...] = ("tests",)) -> CheckSettings:
    """Tiny settings: every step runs in seconds (a 0.05M-parameter CVNet at 32x32)."""
    return CheckSettings(
        device=device, smoke=True, tests=tests, synth_ids=8, synth_size=64, images_per_view=3,
        arch="cvnet_tiny", img_size=32, batch_size=8, num_instances=2, epochs=2, lr=0.01,
        warmup_epochs=0, pad=2, workers=0, max_steps_per_epoch=2, bench_arch="cvnet_tiny",
        bench_input=32, bench_batches=(1,),
        bench_backends=("torch",) if device == "cpu" else ("torch", "torch-eager"),
        bench_min_time=0.0, bench_warmup=0, baselines=False)


class Step(NamedTuple):
    """One command of the check.

    Attributes:
        name: Key in the report (``tests``, ``benchmark``, ``synth``, ``train``, ``eval``).
        title: Its line in the report.
        argv: The command line.
        timeout: Seconds before it is stopped and failed.
        needs: The steps that must have passed first.
    """

    name: str
    title: str
    argv: List[str]
    timeout: float
    needs: Tuple[str, ...] = ()


class Paths:
    """Where a check writes: everything under its output folder ``root``.

    Attributes:
        root: The output folder.
        logs: One ``<step>.log`` per step, and the tests' JUnit XML.
        synth: The synthetic set.
        train: The training run folder; ``model`` its final checkpoint.
        bench_json, eval_json, junit: What the benchmark, cvnet-eval and pytest write.
    """

    def __init__(self, root: str):
        self.root = root
        self.logs = os.path.join(root, "logs")
        self.synth = os.path.join(root, "synth")
        self.train = os.path.join(root, "train")
        self.model = os.path.join(self.train, "model.pt")
        self.bench_json = os.path.join(root, "bench.json")
        self.eval_json = os.path.join(root, "eval.json")
        self.junit = os.path.join(self.logs, "tests.xml")

    def log(self, step: str) -> str:
        """The log file of ``step``."""
        return os.path.join(self.logs, step + ".log")


def _module(name: str, *args: object) -> List[str]:
    return [sys.executable, "-m", name] + [str(a) for a in args]


def steps(settings: CheckSettings, paths: Paths) -> List[Step]:
    """The check's commands, in order, each with a generous timeout (the whole check takes
    about 8 minutes on a large GPU)."""
    s = settings
    bench = _module("cvnet.benchmarks", "--device", s.device, "--precision", s.precision,
                    "--arch", s.bench_arch, "--input-size", s.bench_input,
                    "--batch", ",".join(str(b) for b in s.bench_batches),
                    "--backend", ",".join(s.bench_backends), "--e2e",
                    "--warmup", s.bench_warmup, "--min-time", s.bench_min_time,
                    "--cache-dir", os.path.join(paths.root, "cache"),
                    "--json-out", paths.bench_json)
    if s.baselines:
        bench.append("--baselines")
    train = _module("cvnet.training.cli", "--data", paths.synth, "--output", paths.train,
                    "--arch", s.arch, "--input-size", s.img_size, "--batch-size", s.batch_size,
                    "--num-instances", s.num_instances, "--epochs", s.epochs, "--lr", s.lr,
                    "--lr-schedule", "cosine", "--warmup-epochs", s.warmup_epochs,
                    "--erase-prob", 0, "--pad", s.pad, "--device", s.device,
                    "--workers", s.workers, "--eval-every", 1, "--seed", 0)
    if s.max_steps_per_epoch:
        train += ["--max-steps-per-epoch", str(s.max_steps_per_epoch)]
    return [
        Step("tests", "gpu and trt tests",
             _module("pytest", "-m", "gpu or trt", "-q", "-rs", "-p", "no:cacheprovider",
                     "--junitxml", paths.junit, *s.tests), 600),
        Step("benchmark", "cvnet-bench, {} on {}".format(s.precision.upper(), s.device), bench,
             900),
        Step("synth", "cvnet-synth set",
             _module("cvnet.core.synth", paths.synth, "--ids", s.synth_ids, "--size", s.synth_size,
                     "--images-per-view", s.images_per_view, "--force"), 300),
        Step("train", "AMP training of {} at {}x{}".format(s.arch, s.img_size, s.img_size)
             if s.device == "cuda" else "training of {} at {}x{} (FP32 on the CPU)".format(
                 s.arch, s.img_size, s.img_size), train, 900, needs=("synth",)),
        Step("eval", "cvnet-eval of the trained model",
             _module("cvnet.jetson.eval_cli", paths.model, "--data", paths.synth, "--json-out",
                     paths.eval_json, "--device", s.device), 300,
             needs=("train",)),
    ]


def replace(settings: CheckSettings, **changes: Optional[object]) -> CheckSettings:
    """``settings`` with the given fields changed; None values are left as they were."""
    return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
