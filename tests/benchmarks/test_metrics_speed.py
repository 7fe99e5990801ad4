"""The metric-speed benchmark runs end to end on a tiny problem (no timing is asserted)."""

import numpy as np
import pytest

from cvnet.benchmarks.metrics_speed import main, make_problem

pytestmark = pytest.mark.device


def test_problem_has_realistic_structure():
    distmat, q_ids, g_ids, q_cams, g_cams = make_problem(30, 200, 20, seed=1)
    assert distmat.shape == (30, 200) and distmat.dtype == np.float32
    assert set(q_ids) <= set(g_ids)
    assert {c[0] for c in q_cams} == {"A"} and {c[0] for c in g_cams} == {"G"}
    same = q_ids[:, None] == g_ids[None, :]
    assert distmat[same].mean() < distmat[~same].mean()


def test_benchmark_prints_the_median_last(capsys):
    assert main(["--queries", "20", "--gallery", "60", "--ids", "5", "--runs", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("evaluate_rank 20 x 60: median ") and lines[-1].endswith(
        " s over 2 runs")
    assert main(["--runs", "0"]) == 2
