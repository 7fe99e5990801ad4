"""gpu-check's report: one Markdown page for people, one JSON document for tools.

Both hold the verdict, the environment (GPU, torch, CUDA, cuDNN), each step's result and time,
the AMP training's loss and mAP per epoch, eager against CUDA-graph latency, the benchmark rows
and cvnet-eval's metrics. Schema of the JSON: ``cvnet-gpu-check/1``.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence

from cvnet.benchmarks.report import BenchRow, markdown_results
from cvnet.core.fileio import write_text_atomic
from cvnet.gpucheck.plan import CheckSettings
from cvnet.gpucheck.run import StepResult

SCHEMA = "cvnet-gpu-check/1"
MARKDOWN_FILE = "gpu-check.md"
JSON_FILE = "gpu-check.json"


def build_report(settings: CheckSettings, environment: Dict[str, Any],
                 results: Sequence[StepResult], *, date: str, seconds: float,
                 command: str) -> Dict[str, Any]:
    """The JSON-ready report."""
    from dataclasses import asdict

    return {"schema": SCHEMA, "passed": all(r.passed for r in results), "date": date,
            "command": command, "seconds": round(seconds, 1),
            "mode": "smoke" if settings.smoke else "full", "settings": asdict(settings),
            "environment": environment,
            "steps": [{"name": r.name, "title": r.title, "status": r.status,
                       "seconds": round(r.seconds, 1), "summary": r.summary,
                       "exit_code": r.exit_code, "log": r.log, "details": r.details}
                      for r in results]}


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _gpu_line(env: Dict[str, Any]) -> str:
    gpu = env.get("gpu")
    if not gpu:
        return "GPU: none (CPU run)"
    return (f"GPU: {gpu['name']} (compute capability {gpu['compute_capability']}, "
            f"{gpu['memory_gib']} GiB{', x' + str(gpu['count']) if gpu['count'] > 1 else ''})")


def _step(report: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    return next((s for s in report["steps"] if s["name"] == name), None)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def training_table(epochs: List[Dict[str, Any]]) -> str:
    """Loss (its parts) and mAP per protocol per epoch, as Markdown."""
    protocols = sorted({p for e in epochs for p in e.get("metrics", {})})
    head = ("| epoch | loss | ce_global | ce_part | tri_global | tri_part | "
            + " | ".join(f"{p} mAP" for p in protocols) + " | img/s |")
    lines = [head, "|---:" * (7 + len(protocols)) + "|"]
    for e in epochs:
        losses = [e.get(k) for k in ("loss", "ce_global", "ce_part", "tri_global", "tri_part")]
        cells = ["untrained" if e["epoch"] == 0 else str(e["epoch"])]
        cells += ["-" if v is None else f"{v:.3f}" for v in losses]
        cells += [_pct(e.get("metrics", {}).get(p, {}).get("mAP")) for p in protocols]
        cells.append("-" if e.get("images_per_s") is None else f"{e['images_per_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def graphs_table(rows: List[Dict[str, Any]]) -> str:
    """Eager against CUDA-graph latency per model and batch (network only), as Markdown."""
    index = {(r["model"], r["backend"], r["batch"]): r for r in rows if r["mode"] == "network"}
    lines = ["| model | precision | batch | eager ms | CUDA graphs ms | eager / graphs |",
             "|---|---|---:|---:|---:|---:|"]
    for (model, backend, batch), graphed in sorted(index.items()):
        eager = index.get((model, "pytorch", batch))
        if backend != "pytorch-graphs" or eager is None:
            continue
        lines.append(f"| {model} | {graphed['precision']} | {batch} | {eager['mean_ms']:.2f} | "
                     f"{graphed['mean_ms']:.2f} | {eager['mean_ms'] / graphed['mean_ms']:.2f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown_report(report: Dict[str, Any]) -> str:
    """The whole report as Markdown."""
    env = report["environment"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    parts = [f"# cvnet gpu-check: {verdict}", "",
             f"- Date: {report['date']}; mode: {report['mode']}"
             + (" (tiny settings: proves the orchestration, not the GPU)"
                if report["mode"] == "smoke" else "") + f"; total {_minutes(report['seconds'])}",
             f"- {_gpu_line(env)}",
             f"- torch {env.get('torch')} (CUDA build {env.get('cuda_build') or 'none'}, cuDNN "
             f"{env.get('cudnn') or '-'}), Python {env.get('python')}, TensorRT "
             f"{env.get('tensorrt') or 'not installed'}, ONNX Runtime "
             f"{env.get('onnxruntime') or 'not installed'}",
             f"- Command: `{report['command']}`", "",
             "| step | result | time | summary |", "|---|---|---:|---|"]
    for step in report["steps"]:
        parts.append(f"| {step['title']} | {step['status']} | {_minutes(step['seconds'])} | "
                     f"{step['summary']} |")
    parts += ["", "Logs: " + ", ".join(f"`{os.path.basename(s['log'])}`"
                                        for s in report["steps"]) + " in `logs/`."]
    train = _step(report, "train")
    if train and train["details"].get("epochs"):
        parts += ["", "## Training loss and mAP per epoch", "",
                  training_table(train["details"]["epochs"])]
    bench = _step(report, "benchmark")
    if bench and bench["details"].get("rows"):
        rows = bench["details"]["rows"]
        graphs = graphs_table(rows)
        if graphs:
            parts += ["", "## Eager PyTorch against CUDA-graph replay (network only)", "",
                      graphs]
        parts += ["", "## Benchmark", "", markdown_results([BenchRow(**r) for r in rows])]
    evaluation = _step(report, "eval")
    if evaluation and evaluation["details"].get("metrics"):
        parts += ["", "## cvnet-eval of the trained model", "",
                  "| protocol | mAP | Rank-1 | Rank-5 | mINP |", "|---|---:|---:|---:|---:|"]
        for protocol, m in evaluation["details"]["metrics"].items():
            parts.append(f"| {protocol} | {_pct(m.get('mAP'))} | {_pct(m.get('rank1'))} | "
                         f"{_pct(m.get('rank5'))} | {_pct(m.get('mINP'))} |")
    return "\n".join(parts) + "\n"


def write_reports(folder: str, report: Dict[str, Any]) -> List[str]:
    """Writes gpu-check.md and gpu-check.json into ``folder``, atomically; returns the paths."""
    markdown = write_text_atomic(os.path.join(folder, MARKDOWN_FILE), markdown_report(report))
    document = write_text_atomic(os.path.join(folder, JSON_FILE),
                                 json.dumps(report, indent=1) + "\n")
    return [markdown, document]
