"""Running gpu-check: the pre-flight checks, each step as a process, and what its files say.

:func:`run_check` runs the steps of :func:`cvnet.gpucheck.plan.steps` in order, each as its own
process with its output in ``logs/<step>.log``; a step whose prerequisite failed is not run. Each
step's outcome is read back from the files it wrote (the JUnit XML of the tests, ``bench.json``,
``history.json`` of the training, ``eval.json``), not from its log.
"""

import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from cvnet.core.errors import CVNetError
from cvnet.core.fileio import make_folders
from cvnet.engines.machine import installed, package_version
from cvnet.gpucheck.plan import CheckSettings, Paths, Step, steps

logger = logging.getLogger(__name__)

#: The modules every step needs, with the pip name to install where it differs.
REQUIRED = (("torch", "torch (a CUDA build)"), ("numpy", "numpy"),
            ("cv2", "opencv-python-headless"), ("tqdm", "tqdm"), ("pytest", "pytest"))
#: CVNet's batch-1 latency, CUDA graphs against eager, that issue 12 set as the target.
GRAPH_SPEEDUP_TARGET = 3.0

#: ``run(argv, log_path, timeout, env) -> exit code`` (None when stopped at the timeout).
CommandRunner = Callable[[List[str], str, float, Dict[str, str]], Optional[int]]


class GpuCheckError(CVNetError):
    """gpu-check cannot start here (no CUDA GPU, a missing package)."""


@dataclass
class StepResult:
    """What one step did.

    Attributes:
        name: The step's key.
        title: Its line in the report.
        status: ``passed``, ``failed`` or ``not run``.
        seconds: Wall time.
        summary: One line for the report.
        log: Its log file.
        exit_code: The process's exit code (None: not run, or stopped at the timeout).
        details: What the step's files say (rows, epochs, metrics), for the report.
    """

    name: str
    title: str
    status: str
    seconds: float
    summary: str
    log: str
    exit_code: Optional[int] = None
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def missing_modules() -> List[str]:
    """The pip names of required packages this Python cannot import."""
    needed = list(REQUIRED)
    if sys.version_info < (3, 11):
        needed.append(("tomli", "tomli"))
    return [pip for module, pip in needed if not installed(module)]


def probe_environment() -> Dict[str, Any]:
    """Python, torch, CUDA, cuDNN, the GPU, and whether TensorRT and ONNX Runtime import."""
    import torch

    env: Dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "gpu": None,
    }
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2 ** 30, 1),
                      "count": torch.cuda.device_count()}
    for module in ("tensorrt", "onnxruntime"):
        env[module] = package_version(module)  # None when missing, "unusable (...)" if broken
    return env


def preflight(settings: CheckSettings) -> Dict[str, Any]:
    """Checks that this machine can run the check; returns its environment.

    Raises:
        GpuCheckError: Python older than 3.9, a missing package, or (without ``--smoke``) no
            CUDA GPU that this PyTorch sees; the message says what to install or run instead.
    """
    if sys.version_info < (3, 9):
        raise GpuCheckError(f"gpu-check needs Python 3.9 or newer; this is "
                            f"{platform.python_version()} ({sys.executable}): run it with "
                            "make gpu-check PYTHON=/path/to/python3")
    missing = missing_modules()
    if missing:
        raise GpuCheckError(f"{sys.executable} cannot import {', '.join(missing)}; gpu-check "
                            "installs nothing (it runs without network): install them into "
                            "this Python first, or pass make gpu-check PYTHON=... for one that "
                            "has them")
    env = probe_environment()
    if settings.device == "cuda" and not env["cuda_available"]:
        build = (f"a CUDA {env['cuda_build']} build" if env["cuda_build"]
                 else "a CPU-only build")
        raise GpuCheckError(
            f"gpu-check needs a CUDA GPU, and this PyTorch sees none (torch {env['torch']}, "
            f"{build}; torch.cuda.is_available() is False). Run it on a machine with an NVIDIA "
            "GPU and its driver, with a CUDA build of torch installed (e.g. pip install torch "
            "--index-url https://download.pytorch.org/whl/cu124); --smoke --device cpu runs "
            "the same steps with tiny settings on the CPU")
    if settings.device == "cpu" and not settings.smoke:
        raise GpuCheckError("the full gpu-check runs on CUDA only; --smoke runs a tiny version "
                            "of every step on the CPU")
    return env


def run_command(argv: List[str], log_path: str, timeout: float,
                env: Dict[str, str]) -> Optional[int]:
    """Runs ``argv`` with its output in ``log_path``; its exit code, None at the timeout."""
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return None


def _source_root() -> str:
    """The folder holding the ``cvnet`` package (the repository when it is not installed)."""
    import cvnet

    return os.path.dirname(os.path.dirname(os.path.abspath(cvnet.__file__)))


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_source_root(), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_check(settings: CheckSettings, output: str, *,
              runner: CommandRunner = run_command) -> List[StepResult]:
    """Runs every step in order; a step whose prerequisite failed is reported as not run.

    Args:
        settings: The run's sizes.
        output: The output folder (created).
        runner: Runs one command (injectable for tests).

    Returns:
        One result per step.
    """
    paths = Paths(os.path.abspath(output))
    make_folders(paths.logs)
    env = _child_env()
    results: Dict[str, StepResult] = {}
    plan = steps(settings, paths)
    for number, step in enumerate(plan, 1):
        blocked = [n for n in step.needs if not results[n].passed]
        if blocked:
            results[step.name] = StepResult(step.name, step.title, "not run", 0.0,
                                            f"not run: {', '.join(blocked)} failed",
                                            paths.log(step.name))
            continue
        logger.info("[%d/%d] %s (log: %s)", number, len(plan), step.title,
                    paths.log(step.name))
        started = time.monotonic()
        code = runner(step.argv, paths.log(step.name), step.timeout, env)
        seconds = time.monotonic() - started
        result = _judge(step, code, seconds, settings, paths)
        logger.info("[%d/%d] %s: %s in %.0f s: %s", number, len(plan), step.title,
                    result.status, seconds, result.summary)
        results[step.name] = result
    return [results[step.name] for step in plan]


def _judge(step: Step, code: Optional[int], seconds: float, settings: CheckSettings,
           paths: Paths) -> StepResult:
    """The result of a finished step, from its exit code and the files it wrote."""
    result = StepResult(step.name, step.title, "failed", seconds, "", paths.log(step.name),
                        exit_code=code)
    if code is None:
        result.summary = f"stopped after its {step.timeout:.0f} s timeout; see the log"
        return result
    reader = {"tests": _read_tests, "benchmark": _read_bench, "synth": _read_synth,
              "train": _read_training, "eval": _read_eval}[step.name]
    try:
        passed, result.summary, result.details = reader(paths, settings)
    except (OSError, ValueError, KeyError, TypeError, ElementTree.ParseError) as err:
        passed, result.summary = False, f"its output could not be read ({err})"
    if code != 0:
        passed = False
        result.summary = f"exit code {code}; see the log. " + result.summary
    result.status = "passed" if passed else "failed"
    return result


def _read_tests(paths: Paths, settings: CheckSettings):
    root = ElementTree.parse(paths.junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {key: sum(int(s.get(key, 0)) for s in suites)
              for key in ("tests", "failures", "errors", "skipped")}
    skipped = sorted({node.get("message", "") for node in root.iter("skipped")})
    ran = counts["tests"] - counts["skipped"]
    summary = (f"{ran - counts['failures'] - counts['errors']} passed, {counts['failures']} "
               f"failed, {counts['errors']} errors, {counts['skipped']} skipped")
    return (counts["failures"] + counts["errors"] == 0,
            summary, {"counts": counts, "skip_reasons": skipped})


def _read_bench(paths: Paths, settings: CheckSettings):
    with open(paths.bench_json, encoding="utf-8") as handle:
        report = json.load(handle)
    rows = report["results"]
    models = sorted({r["model"] for r in rows})
    key = f"{settings.bench_arch} pytorch-graphs/pytorch b1"
    speedup = report["ratios"].get(key)
    summary = f"{len(rows)} rows, {len(models)} models"
    if speedup is not None:
        met = "met" if speedup >= GRAPH_SPEEDUP_TARGET else "not met"
        summary += (f"; {settings.bench_arch} batch 1: CUDA graphs {speedup:.2f}x eager "
                    f"throughput (target >= {GRAPH_SPEEDUP_TARGET:g}x: {met})")
    expected = {settings.bench_arch} if not settings.baselines else None
    complete = bool(rows) and (expected is None or expected <= set(models))
    return complete, summary, {"rows": rows, "ratios": report["ratios"],
                               "graph_speedup_b1": speedup,
                               "environment": report.get("environment", {})}


def _read_synth(paths: Paths, settings: CheckSettings):
    with open(os.path.join(paths.synth, "dataset.csv"), encoding="utf-8") as handle:
        images = sum(1 for _ in handle) - 1
    return images > 0, f"{images} images of {settings.synth_ids} identities", {}


def mean_map(metrics: Dict[str, Dict[str, float]]) -> float:
    """mAP averaged over the protocols of a metrics record."""
    values = [m["mAP"] for m in metrics.values()]
    return sum(values) / len(values)


def _read_training(paths: Paths, settings: CheckSettings):
    with open(os.path.join(paths.train, "history.json"), encoding="utf-8") as handle:
        epochs = json.load(handle)["epochs"]
    trained = [e for e in epochs if e["epoch"] > 0]
    finite = all(math.isfinite(e["loss"]) for e in trained)
    before = mean_map(epochs[0]["metrics"]) if epochs and epochs[0]["epoch"] == 0 else None
    after = mean_map(trained[-1]["metrics"]) if trained and "metrics" in trained[-1] else None
    rose = before is not None and after is not None and after > before
    summary = (f"{len(trained)} epochs, "
               + ("every loss finite" if finite else "NON-FINITE loss")
               + (f", mAP {100 * before:.1f} -> {100 * after:.1f} (mean of protocols)"
                  if rose or (before is not None and after is not None) else ""))
    if not rose:
        summary += (" (the smoke run is too short to learn: not required)" if settings.smoke
                    else "; mAP did not rise over the untrained model")
    passed = finite and len(trained) == settings.epochs and (rose or settings.smoke)
    return passed, summary, {"epochs": epochs, "map_before": before, "map_after": after}


def _read_eval(paths: Paths, settings: CheckSettings):
    with open(paths.eval_json, encoding="utf-8") as handle:
        metrics = json.load(handle)["metrics"]
    summary = "; ".join(f"{protocol} mAP {100 * m['mAP']:.1f}, Rank-1 {100 * m['rank1']:.1f}"
                        for protocol, m in metrics.items())
    return bool(metrics), summary, {"metrics": metrics}


def summarize(results: Sequence[StepResult]) -> bool:
    """Whether every step passed."""
    return all(r.passed for r in results)
