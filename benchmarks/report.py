"""Benchmark results as records, and their Markdown, JSON, CSV and plot renderings.

One :class:`BenchRow` per (model, backend, precision, batch, mode). The report beside the paper
compares each Table 2 method's parameters and FPS with the measured ones (FPS = images per
second at the smallest measured batch, network only), and CVNet's speed ratio to each baseline
on the same backend. JSON and CSV carry the same rows; the plot (matplotlib, imported lazily)
draws FPS against parameters on a log scale.
"""

import csv
import io
import json
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from cvnet.benchmarks.agreement import fastest_line, fastest_paths
from cvnet.benchmarks.paper import PaperRow
from cvnet.core.parity import requirement
from cvnet.benchmarks.stats import LatencyStats
from cvnet.core.fileio import write_text_atomic

#: Version of the JSON report's layout.
SCHEMA = "cvnet-bench/1"


class BenchRow(NamedTuple):
    """The measurement of one configuration.

    Attributes:
        model: Registered model name (or the sidecar's variant).
        backend: ``pytorch`` (eager), ``pytorch-graphs`` (CUDA-graph replay), ``onnxruntime``
            or ``tensorrt``.
        device: ``cpu`` or ``cuda`` (what ran the network).
        precision: ``fp32`` or ``fp16``.
        batch: Images per batch.
        mode: ``network`` (preprocessed batch in, embeddings out) or ``e2e`` (JPEG bytes in,
            L2-normalised embeddings out).
        runs, mean_ms, std_ms, p50_ms, p90_ms, p99_ms, throughput: See
            :class:`cvnet.benchmarks.stats.LatencyStats` (ms per batch; images per second).
        params: Parameters without ID classifiers (None if unknown).
        gmacs: Billions of multiply-accumulates per image (None if unknown).
        peak_rss_mb: Peak resident memory of the process after this configuration, MiB.
        gpu_mem_mb: Peak GPU memory PyTorch allocated, MiB (None elsewhere).
        cosine_min: Smallest cosine of its embeddings of the verification images to its FP32
            reference's (:mod:`cvnet.benchmarks.agreement`); None when not measured.
        top5_agreement: Share of those images whose top-5 neighbours are the reference's.
        agrees: Whether it keeps the rankings: its precision's cosine and top-5 agreement >=
            0.99 (:func:`cvnet.core.parity.keeps_rankings`); None for no figures (the reference
            itself among them).
    """

    model: str
    backend: str
    device: str
    precision: str
    batch: int
    mode: str
    runs: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float
    params: Optional[int]
    gmacs: Optional[float]
    peak_rss_mb: Optional[float]
    gpu_mem_mb: Optional[float]
    cosine_min: Optional[float] = None
    top5_agreement: Optional[float] = None
    agrees: Optional[bool] = None


def row_from_stats(stats: LatencyStats, **fields: Any) -> BenchRow:
    """A row from timing statistics plus the configuration ``fields``."""
    values = {k: v for k, v in stats._asdict().items() if k in BenchRow._fields}
    values.update(fields)
    return BenchRow(**values)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "{:.{}f}".format(value, digits) if math.isfinite(value) else str(value)
    return str(value)


def _params_m(params: Optional[int]) -> Optional[float]:
    return None if params is None else params / 1e6


def markdown_results(rows: Sequence[BenchRow]) -> str:
    """The measurements as a Markdown table."""
    lines = ["| model | backend | device | precision | batch | mode | mean ms | std ms | p50 ms "
             "| p90 ms | p99 ms | images/s | params (M) | GMACs | peak RSS MiB | cosine min "
             "| top-5 agree | keeps rankings |",
             "|---|---|---|---|---:|---|" + "---:|" * 11 + "---|"]
    for r in rows:
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} "
                     "| {} | {} | {} |".format(
                         r.model, r.backend, r.device, r.precision, r.batch, r.mode,
                         _fmt(r.mean_ms), _fmt(r.std_ms), _fmt(r.p50_ms), _fmt(r.p90_ms),
                         _fmt(r.p99_ms), _fmt(r.throughput), _fmt(_params_m(r.params), 2),
                         _fmt(r.gmacs, 2), _fmt(r.peak_rss_mb, 0), _fmt(r.cosine_min, 6),
                         "-" if r.top5_agreement is None else "{:.0%}".format(r.top5_agreement),
                         {None: "-", True: "yes", False: "NO"}[r.agrees]))
    return "\n".join(lines)


def path_of(row: BenchRow) -> str:
    """The path a row measured, as the comparison and the ratios name it: its backend, and for
    OpenVINO (timed at several precisions in one run) its precision too: ``openvino bf16``."""
    return "{} {}".format(row.backend, row.precision) if row.backend == "openvino" else row.backend


def fps_of(rows: Sequence[BenchRow], model: str, backend: str) -> Optional[float]:
    """Network-only images/s of ``model`` on ``backend`` (a :func:`path_of` name) at its
    smallest measured batch."""
    candidates = [r for r in rows if r.model == model and path_of(r) == backend
                  and r.mode == "network"]
    if not candidates:
        return None
    return min(candidates, key=lambda r: r.batch).throughput


def _measured(rows: Sequence[BenchRow], arch: str) -> List[BenchRow]:
    key = "cvnet" if arch == "cvnet" else arch
    return [r for r in rows if (r.model.startswith("cvnet") if key == "cvnet" else r.model == key)]


def comparison(rows: Sequence[BenchRow], paper: Sequence[PaperRow]) -> List[Dict[str, Any]]:
    """Table 2 beside the measurements: one record per paper method.

    Each record: ``method``, ``arch``, ``params_m_paper``, ``params_m_measured``, ``gmacs``,
    ``fps_paper``, ``fps_measured`` (path -> images/s at the smallest batch) and
    ``cvnet_speedup`` (path -> CVNet's images/s divided by this method's); a path is a backend,
    with its precision for OpenVINO (:func:`path_of`).
    """
    backends = sorted({path_of(r) for r in rows})
    cvnet_rows = _measured(rows, "cvnet")
    cvnet_model = cvnet_rows[0].model if cvnet_rows else None
    records = []
    for p in paper:
        mine = _measured(rows, p.arch)
        model = mine[0].model if mine else None
        fps = {b: fps_of(rows, model, b) for b in backends} if model else {}
        fps = {b: v for b, v in fps.items() if v is not None}
        speedup = {}
        for backend, value in fps.items():
            cv = fps_of(rows, cvnet_model, backend) if cvnet_model else None
            if cv is not None and value:
                speedup[backend] = cv / value
        records.append({
            "method": p.method, "arch": p.arch, "model": model,
            "params_m_paper": p.params_m,
            "params_m_measured": _params_m(mine[0].params) if mine else None,
            "gmacs": mine[0].gmacs if mine else None, "fps_paper": p.fps,
            "fps_measured": fps, "cvnet_speedup": speedup})
    return records


def markdown_comparison(records: Sequence[Dict[str, Any]], backends: Sequence[str]) -> str:
    """Table 2 beside the measurements as Markdown (FPS at the smallest measured batch)."""
    head = "| method | params M (paper) | params M (measured) | GMACs | FPS (paper) |"
    rule = "|---|---:|---:|---:|---:|"
    for b in backends:
        head += " FPS {} | CVNet x ({}) |".format(b, b)
        rule += "---:|---:|"
    lines = [head, rule]
    for rec in records:
        line = "| {} | {} | {} | {} | {} |".format(
            rec["method"], _fmt(rec["params_m_paper"]), _fmt(rec["params_m_measured"], 2),
            _fmt(rec["gmacs"], 2), _fmt(rec["fps_paper"]))
        for b in backends:
            line += " {} | {} |".format(_fmt(rec["fps_measured"].get(b)),
                                        _fmt(rec["cvnet_speedup"].get(b), 2))
        lines.append(line)
    return "\n".join(lines)


def ratios(rows: Sequence[BenchRow]) -> Dict[str, float]:
    """The headline ratios, per model and batch where both sides were measured.

    ``<model> onnxruntime/pytorch b<N>``: ONNX Runtime over PyTorch network throughput (and
    ``openvino fp32/pytorch``, ``openvino bf16/pytorch`` likewise);
    ``<model> pytorch-graphs/pytorch b<N>``: CUDA-graph replay over eager PyTorch (at batch 1,
    how many times lower its latency is);
    ``<model> <backend> e2e/network b<N>``: end-to-end over network-only throughput.
    """
    index = {(r.model, path_of(r), r.batch, r.mode): r.throughput for r in rows}
    out = {}
    for (model, backend, batch, mode), value in sorted(index.items()):
        if mode != "network":
            continue
        if (backend not in ("pytorch", "tensorrt")
                and (model, "pytorch", batch, "network") in index):
            out["{} {}/pytorch b{}".format(model, backend, batch)] = (
                value / index[(model, "pytorch", batch, "network")])
        if (model, backend, batch, "e2e") in index:
            out["{} {} e2e/network b{}".format(model, backend, batch)] = (
                index[(model, backend, batch, "e2e")] / value)
    return out


def environment_lines(env: Dict[str, Any]) -> str:
    """The environment as a short Markdown list."""
    keys = ("cpu", "cpu_count", "physical_cores", "load_average", "gpus", "python", "numpy",
            "opencv", "onnxruntime", "openvino", "tensorrt", "torch", "jetson")
    return "\n".join("- {}: {}".format(k, env.get(k) if env.get(k) is not None else "-")
                     for k in keys if k in env)


def threads_line(settings: Dict[str, Any]) -> str:
    """The CPU threads the backends ran with, as a Markdown list item."""
    line = "- threads: ONNX Runtime and OpenVINO {}".format(settings.get("threads", "-"))
    torch_threads = settings.get("torch_threads")
    if torch_threads:
        line += "; PyTorch {} ({})".format(torch_threads["threads"], torch_threads["reason"])
    return line


def markdown_report(report: Dict[str, Any]) -> str:
    """The whole report (from :func:`build_report`) as Markdown."""
    rows = [BenchRow(**r) for r in report["results"]]
    backends = sorted({path_of(r) for r in rows})
    parts = ["## cvnet-bench ({})".format(report["date"]), "",
             "Command: `{}`".format(report["command"]), "",
             environment_lines(report["environment"]), threads_line(report["settings"]), "",
             markdown_results(rows), "",
             "### Beside the paper's Table 2 (FPS: images/s at the smallest measured batch, "
             "network only; the paper's FPS come from its own hardware)", "",
             markdown_comparison(report["comparison"], backends)]
    if report["ratios"]:
        parts += ["", "### Ratios", ""]
        parts += ["- {}: {:.2f}".format(k, v) for k, v in report["ratios"].items()]
    fastest = fastest_line(report.get("fastest_cpu_path") or [])
    if fastest:
        parts += ["", "Agreement: {} on {} verification images; keeps rankings = {}.".format(
            report["settings"].get("agreement_reference", "each path's FP32 reference"),
            report["settings"].get("verify_images", "-"),
            "; ".join("{}: {}".format(precision, requirement(precision, rankings=True))
                      for precision in ("fp32", "fp16", "bf16"))),
            "", fastest]
    if report.get("plan"):  # cvnet-bench --target-fps
        from cvnet.benchmarks.planner import markdown_plan

        parts += ["", markdown_plan(report["plan"])]
    return "\n".join(parts) + "\n"


def build_report(rows: Sequence[BenchRow], paper: Sequence[PaperRow], environment: Dict[str, Any],
                 *, command: str, date: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON-ready report: schema, command, date, settings, environment, rows, Table 2."""
    return {"schema": SCHEMA, "command": command, "date": date, "settings": settings,
            "environment": environment, "results": [r._asdict() for r in rows],
            "comparison": comparison(rows, paper), "ratios": ratios(rows),
            "fastest_cpu_path": fastest_paths(rows),
            "paper": [p._asdict() for p in paper]}


def write_json(path: str, report: Dict[str, Any]) -> str:
    """Writes the report as JSON, atomically."""
    return write_text_atomic(path, json.dumps(report, indent=2, sort_keys=False) + "\n")


def csv_text(rows: Sequence[BenchRow]) -> str:
    """The rows as CSV with a header of :class:`BenchRow`'s fields."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BenchRow._fields)
    for r in rows:
        writer.writerow(["" if v is None else v for v in r])
    return buffer.getvalue()


def write_csv(path: str, rows: Sequence[BenchRow]) -> str:
    """Writes the rows as CSV, atomically."""
    return write_text_atomic(path, csv_text(rows))


def write_plot(path: str, report: Dict[str, Any]) -> str:
    """Draws FPS against parameters (log x): the paper's points and the measured ones.

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install cvnet[plot]``).
    """
    from cvnet.jetson.eval_plots import require_matplotlib, save_png

    plt = require_matplotlib("--plot", fix=None)
    figure, axes = plt.subplots(figsize=(7, 5))
    records = report["comparison"]
    axes.scatter([r["params_m_paper"] for r in records], [r["fps_paper"] for r in records],
                 marker="o", label="paper (its hardware)")
    for r in records:
        axes.annotate(r["method"], (r["params_m_paper"], r["fps_paper"]), fontsize=7)
    backends = sorted({b for r in records for b in r["fps_measured"]})
    for marker, backend in zip("s^vD", backends):
        points = [(r["params_m_measured"], r["fps_measured"][backend]) for r in records
                  if backend in r["fps_measured"] and r["params_m_measured"]]
        if points:
            axes.scatter([p[0] for p in points], [p[1] for p in points], marker=marker,
                         label="measured, {}".format(backend))
    axes.set_xscale("log")
    axes.set_xlabel("parameters (millions, log scale)")
    axes.set_ylabel("FPS (images/s)")
    axes.set_title("cvnet-bench {}".format(report["date"]))
    axes.legend(fontsize=8)
    return save_png(plt, figure, path, dpi=120)
