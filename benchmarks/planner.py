"""Crops-per-frame planner: how many vehicles a device re-identifies per frame at a frame rate.

``cvnet-bench --target-fps 30`` turns the measured per-batch latencies into a plan. A frame's
crops are embedded as one batch, which must finish within the frame's budget, ``1000 / fps``
milliseconds. For each model, backend, device and precision:

- the latency used is the **90th percentile** of the **end-to-end** batch latency (JPEG bytes
  in, L2-normalised embeddings out; ``--target-fps`` turns ``--e2e`` on), since a frame rate is
  sustained only if nearly every frame keeps up; where only network-only rows exist they are used
  and the plan says so (decoding and preprocessing then come on top);
- **only measured batches count**: nothing is interpolated or extrapolated. The plan is the
  largest measured batch N whose latency, and that of every smaller measured batch (a frame may
  carry fewer crops), fits the budget. When N is the largest batch measured, the device may
  sustain more: the plan says so, and how to measure further;
- the TensorRT profile to build for it is ``cvnet-build --batch 1:N:N``: any count of crops from
  one to N per frame, tuned for the busiest frame, which is the one that must meet the deadline.

Example:
    >>> plans = plan_batches(rows, target_fps=30)
    >>> plans[0]["crops_per_frame"], plans[0]["build_profile"]          # 8, "1:8:8"
"""

from typing import Any, Dict, List, Sequence

from cvnet.benchmarks.report import BenchRow

#: The latency statistic a plan uses (ms per batch).
STATISTIC = "p90_ms"


def _config(row: BenchRow) -> tuple:
    return (row.model, row.backend, row.device, row.precision)


def plan_batches(rows: Sequence[BenchRow], target_fps: float,
                 statistic: str = STATISTIC) -> List[Dict[str, Any]]:
    """One plan per measured configuration (see the module docstring).

    Args:
        rows: Measurements from :func:`cvnet.benchmarks.run.measure`.
        target_fps: Frames per second to sustain (> 0).
        statistic: The latency field of :class:`BenchRow` to use.

    Returns:
        JSON-ready dicts: ``model, backend, device, precision, mode`` (the rows used: ``e2e``
        or ``network``), ``target_fps``, ``budget_ms``, ``statistic``, ``crops_per_frame``
        (0 when even the smallest batch misses), ``latency_ms`` (of that batch, None at 0),
        ``crops_per_second``, ``build_profile`` (``"1:N:N"``, None at 0), ``measured`` (batch ->
        latency), ``limited_by_measurement`` (N is the largest batch measured) and ``note``.

    Raises:
        ValueError: ``target_fps`` is not positive.
    """
    if not target_fps > 0:
        raise ValueError("--target-fps must be positive, got {}".format(target_fps))
    budget = 1000.0 / target_fps
    configs = []  # type: List[tuple]
    for row in rows:
        if _config(row) not in configs:
            configs.append(_config(row))
    plans = []
    for config in configs:
        mine = [row for row in rows if _config(row) == config]
        mode = "e2e" if any(row.mode == "e2e" for row in mine) else "network"
        latency = {row.batch: float(getattr(row, statistic)) for row in mine if row.mode == mode}
        crops = 0
        for batch in sorted(latency):
            if latency[batch] > budget:
                break
            crops = batch
        largest = max(latency)
        plans.append({
            "model": config[0], "backend": config[1], "device": config[2],
            "precision": config[3], "mode": mode, "target_fps": float(target_fps),
            "budget_ms": budget, "statistic": statistic, "crops_per_frame": crops,
            "latency_ms": latency[crops] if crops else None,
            "crops_per_second": crops * float(target_fps),
            "build_profile": "1:{0}:{0}".format(crops) if crops else None,
            "measured": {str(batch): latency[batch] for batch in sorted(latency)},
            "limited_by_measurement": crops == largest,
            "note": _note(crops, largest, latency, budget, mode)})
    return plans


def _note(crops: int, largest: int, latency: Dict[int, float], budget: float,
          mode: str) -> str:
    notes = []
    if crops == 0:
        smallest = min(latency)
        notes.append("batch {} takes {:.1f} ms, over the {:.1f} ms budget: lower the frame "
                     "rate or use a faster backend or precision".format(
                         smallest, latency[smallest], budget))
    elif crops == largest:
        notes.append("the largest measured batch fits with {:.1f} ms to spare: measure larger "
                     "ones (--batch ...,{}) to find the limit".format(
                         budget - latency[crops], 2 * largest))
    else:
        following = min(batch for batch in latency if batch > crops)
        notes.append("batch {} takes {:.1f} ms".format(following, latency[following]))
    if mode == "network":
        notes.append("network only: decoding and preprocessing are not included (run with "
                     "--e2e)")
    return "; ".join(notes)


def markdown_plan(plans: Sequence[Dict[str, Any]]) -> str:
    """The plans as a Markdown section."""
    if not plans:
        return ""
    first = plans[0]
    lines = ["### Crops per frame at {:g} FPS (budget {:.1f} ms per frame; {} latency; measured "
             "batches only)".format(first["target_fps"], first["budget_ms"],
                                    first["statistic"].replace("_ms", "")),
             "",
             "| model | backend | device | precision | rows | crops per frame | latency ms "
             "| crops/s | cvnet-build --batch | note |",
             "|---|---|---|---|---|---:|---:|---:|---|---|"]
    for plan in plans:
        crops = plan["crops_per_frame"]
        lines.append("| {} | {} | {} | {} | {} | {}{} | {} | {:g} | {} | {} |".format(
            plan["model"], plan["backend"], plan["device"], plan["precision"], plan["mode"],
            ">= " if plan["limited_by_measurement"] and crops else "", crops,
            "-" if plan["latency_ms"] is None else "{:.1f}".format(plan["latency_ms"]),
            plan["crops_per_second"], plan["build_profile"] or "-", plan["note"]))
    return "\n".join(lines)
