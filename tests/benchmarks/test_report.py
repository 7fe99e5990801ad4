"""The report: Markdown table, JSON schema, CSV columns, Table 2 beside, ratios, plot."""

import csv
import json

import pytest

from cvnet.benchmarks.paper import baseline_archs, load_table2, paper_row
from cvnet.benchmarks.report import (SCHEMA, BenchRow, build_report, comparison, csv_text,
                                     markdown_report, ratios, row_from_stats, write_csv, write_json,
                                     write_plot)
from cvnet.benchmarks.stats import latency_stats

pytestmark = pytest.mark.device


def _row(model, backend, batch, seconds, mode="network", params=4360623):
    return row_from_stats(latency_stats([seconds] * 5, batch), model=model, backend=backend,
                          device="cpu", precision="fp32", mode=mode, params=params, gmacs=3.36,
                          peak_rss_mb=500.0, gpu_mem_mb=None)


ROWS = [_row("cvnet", "pytorch", 1, 0.2), _row("cvnet", "pytorch", 8, 1.6),
        _row("cvnet", "onnxruntime", 1, 0.1), _row("cvnet", "onnxruntime", 8, 0.8),
        _row("cvnet", "onnxruntime", 8, 0.9, mode="e2e"),
        _row("bot", "onnxruntime", 1, 0.5, params=23800000)]


def _report():
    return build_report(ROWS, load_table2(), {"cpu": "Test CPU", "cpu_count": 2},
                        command="cvnet-bench", date="2026-01-01 00:00 UTC",
                        settings={"batches": [1, 8]})


def test_table2_ships_with_the_package():
    rows = load_table2()
    assert [r.method for r in rows][-1] == "CVNet"
    assert paper_row("cvnet_tiny").fps == 18.2 and paper_row("bot").params_m == 23.8
    assert len(baseline_archs()) == 8 and "cvnet" not in baseline_archs()


def test_ratios_compare_like_with_like():
    got = ratios(ROWS)
    assert got["cvnet onnxruntime/pytorch b8"] == pytest.approx(2.0)
    assert got["cvnet onnxruntime/pytorch b1"] == pytest.approx(2.0)
    assert got["cvnet onnxruntime e2e/network b8"] == pytest.approx(0.8 / 0.9)
    assert not any(k.startswith("bot") for k in got)  # bot was not run with pytorch


def test_graph_replay_is_compared_with_eager_side_by_side():
    rows = [_row("cvnet", "pytorch", 1, 0.0096), _row("cvnet", "pytorch-graphs", 1, 0.0024),
            _row("cvnet", "pytorch-graphs", 8, 0.01)]
    assert ratios(rows) == {"cvnet pytorch-graphs/pytorch b1": pytest.approx(4.0)}


def test_comparison_puts_measured_beside_the_paper():
    records = {r["method"]: r for r in comparison(ROWS, load_table2())}
    assert records["CVNet"]["fps_measured"] == pytest.approx({"onnxruntime": 10.0,
                                                              "pytorch": 5.0})
    assert records["CVNet"]["params_m_measured"] == pytest.approx(4.360623)
    assert records["BoT"]["fps_measured"] == pytest.approx({"onnxruntime": 2.0})
    assert records["BoT"]["cvnet_speedup"] == pytest.approx({"onnxruntime": 5.0})
    assert records["MGN"]["fps_measured"] == {} and records["MGN"]["fps_paper"] == 1.2


def test_json_schema(tmp_path):
    path = write_json(str(tmp_path / "r.json"), _report())
    with open(path) as handle:
        data = json.load(handle)
    assert data["schema"] == SCHEMA
    assert set(data) == {"schema", "command", "date", "settings", "environment", "results",
                         "comparison", "ratios", "fastest_cpu_path", "paper"}
    assert [set(r) for r in data["results"]] == [set(BenchRow._fields)] * len(ROWS)
    assert {"method", "params_m_paper", "params_m_measured", "gmacs", "fps_paper",
            "fps_measured", "cvnet_speedup"} <= set(data["comparison"][0])
    assert len(data["paper"]) == 9


def test_csv_has_one_line_per_row(tmp_path):
    path = write_csv(str(tmp_path / "r.csv"), ROWS)
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == list(BenchRow._fields)
    assert len(records) == len(ROWS)
    assert records[0]["gpu_mem_mb"] == "" and float(records[1]["throughput"]) == 5.0
    assert csv_text([]).strip() == ",".join(BenchRow._fields)


def test_markdown_report_has_the_tables():
    text = markdown_report(_report())
    assert "| cvnet | onnxruntime | cpu | fp32 | 8 | e2e |" in text
    assert "| CVNet | 4.4 | 4.36 | 3.36 | 18.2 |" in text
    assert "| MGN | 70.4 | - | - | 1.2 |" in text
    assert "- cvnet onnxruntime/pytorch b8: 2.00" in text
    assert "- cpu: Test CPU" in text


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    path = write_plot(str(tmp_path / "fps.png"), _report())
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
