"""The ONNX Runtime profile: kernel time per operator type and the NCHWc reorders of a graph."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from cvnet.benchmarks.ort_profile import main, markdown, profile  # noqa: E402


def _graph(path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [16, 16, 1, 1],
                                np.eye(16, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMax", ["c"], ["y"], axes=[1], keepdims=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_profile_sums_kernel_times_per_operator(tmp_path):
    path = _graph(str(tmp_path / "g.onnx"))
    times, reorders = profile(path, batch=2, runs=3, threads=1)
    assert "ReduceMax" in times and all(ms >= 0 for ms in times.values())
    assert reorders in (0, 1)  # 1 where ONNX Runtime runs the Conv in NCHWc (the max needs NCHW)
    table = markdown({(path, 2): (times, reorders)})
    assert "| `ReduceMax` |" in table and "g.onnx, b2" in table
    assert table.splitlines()[-1] == "| `ReorderOutput` nodes (NCHWc -> NCHW) | {} |".format(
        reorders)


def test_a_file_onnx_runtime_cannot_load_is_a_clear_error(tmp_path, caplog):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    assert main([str(broken), "--batch", "1", "--runs", "1"]) == 1
    assert "broken.onnx: ONNX Runtime cannot load it" in caplog.text
    assert "re-export it with cvnet-export" in caplog.text


def test_the_command_prints_a_table(tmp_path, capsys):
    path = _graph(str(tmp_path / "g.onnx"))
    assert main([path, "--batch", "1", "--runs", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "| total |" in out
