"""The crops-per-frame planner on known latencies, and through cvnet-bench --target-fps."""

import json

import pytest

from cvnet.benchmarks.cli import main
from cvnet.benchmarks.planner import markdown_plan, plan_batches
from cvnet.benchmarks.report import BenchRow
from tests.fixtures import TINY_ONNX

pytestmark = pytest.mark.device


def _row(batch, p90, mode="e2e", backend="tensorrt", precision="fp16"):
    return BenchRow(model="cvnet", backend=backend, device="cuda", precision=precision,
                    batch=batch, mode=mode, runs=20, mean_ms=p90 * 0.9, std_ms=1.0,
                    p50_ms=p90 * 0.9, p90_ms=p90, p99_ms=p90 * 1.1,
                    throughput=batch / p90 * 1000, params=None, gmacs=None, peak_rss_mb=None,
                    gpu_mem_mb=None)


def test_largest_measured_batch_within_the_frame_budget():
    # 30 FPS: 33.3 ms per frame. Batch 16 takes 30 ms (fits), 32 takes 41 ms (misses).
    rows = [_row(b, ms) for b, ms in ((1, 6.0), (4, 9.0), (8, 14.0), (16, 30.0), (32, 41.0))]
    rows += [_row(b, ms, mode="network") for b, ms in ((1, 2.0), (32, 20.0))]  # not used: e2e is
    plan, = plan_batches(rows, 30)
    assert plan["budget_ms"] == pytest.approx(1000 / 30) and plan["mode"] == "e2e"
    assert plan["crops_per_frame"] == 16 and plan["latency_ms"] == 30.0
    assert plan["build_profile"] == "1:16:16" and plan["crops_per_second"] == 480
    assert not plan["limited_by_measurement"] and "batch 32 takes 41.0 ms" in plan["note"]
    assert plan["measured"] == {"1": 6.0, "4": 9.0, "8": 14.0, "16": 30.0, "32": 41.0}
    # At 60 FPS (16.7 ms) batch 8 is the answer; at 200 FPS (5 ms) nothing fits.
    assert plan_batches(rows, 60)[0]["crops_per_frame"] == 8
    nothing, = plan_batches(rows, 200)
    assert nothing["crops_per_frame"] == 0 and nothing["build_profile"] is None
    assert "batch 1 takes 6.0 ms, over the 5.0 ms budget" in nothing["note"]


def test_only_measured_batches_and_every_smaller_one_must_fit():
    # A noisy batch 8 over the budget: batch 16 fitting does not count (a frame may hold 8).
    rows = [_row(1, 10.0), _row(8, 40.0), _row(16, 30.0)]
    assert plan_batches(rows, 30)[0]["crops_per_frame"] == 1
    # Every batch fits: at least the largest measured, and the plan says to measure more.
    fast = plan_batches([_row(1, 1.0), _row(8, 5.0)], 30)[0]
    assert fast["crops_per_frame"] == 8 and fast["limited_by_measurement"]
    assert "measure larger ones (--batch ...,16)" in fast["note"]
    assert "| >= 8 |" in markdown_plan([fast])


def test_one_plan_per_backend_and_precision_and_network_rows_say_so():
    rows = [_row(1, 5.0, backend="onnxruntime", precision="fp32", mode="network"),
            _row(1, 3.0), _row(4, 8.0)]
    plans = plan_batches(rows, 30)
    assert [(p["backend"], p["precision"], p["crops_per_frame"]) for p in plans] == [
        ("onnxruntime", "fp32", 1), ("tensorrt", "fp16", 4)]
    assert "network only" in plans[0]["note"] and plans[1]["mode"] == "e2e"
    table = markdown_plan(plans)
    assert "### Crops per frame at 30 FPS (budget 33.3 ms per frame; p90 latency" in table
    with pytest.raises(ValueError, match="positive"):
        plan_batches(rows, 0)


def test_cvnet_bench_target_fps_times_end_to_end_and_reports_the_plan(tmp_path, capsys):
    out = str(tmp_path / "report.json")
    # One backend, so one plan: where OpenVINO is installed an .onnx is timed with it too.
    assert main(["--engine", TINY_ONNX, "--backend", "onnxruntime", "--batch", "1,2",
                 "--min-time", "0", "--warmup", "1", "--target-fps", "0.01",
                 "--json-out", out]) == 0
    printed = capsys.readouterr().out
    assert "### Crops per frame at 0.01 FPS (budget 100000.0 ms" in printed
    with open(out) as handle:
        report = json.load(handle)
    assert {r["mode"] for r in report["results"]} == {"network", "e2e"}  # --e2e turned on
    plan, = report["plan"]
    # 100 s per frame: no timing can miss it, so the plan is the largest batch measured.
    assert plan["mode"] == "e2e" and plan["crops_per_frame"] == 2
    assert plan["build_profile"] == "1:2:2" and plan["limited_by_measurement"]
