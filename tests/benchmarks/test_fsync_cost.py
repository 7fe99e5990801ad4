"""cvnet.benchmarks.fsync_cost: its three modes really differ in the fsyncs that reach the disk."""

import json

import pytest

from cvnet.benchmarks.fsync_cost import main
from tests.fixtures import TINY_ONNX

pytestmark = pytest.mark.device


def test_modes_count_the_fsyncs_each_commit_makes(tmp_path, capsys):
    assert main(["--engine", TINY_ONNX, "--images", "12", "--size", "32", "--chunk-size", "4",
                 "--repeats", "1", "--threads", "1", "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    calls = result["fsyncs_per_run"]
    # 3 chunks of 4 files: each .npy fsynced (3), plus meta.json and the new index.sqlite (2);
    # durable adds the folder after each of those 5 renames and the new output folder into its
    # parent. (The index transactions' own syncs are SQLite's, not counted here.)
    assert calls == {"none": 0, "files": 5, "durable": 11}
    assert set(result["images_per_s_median"]) == {"none", "files", "durable"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # runs cleaned up
