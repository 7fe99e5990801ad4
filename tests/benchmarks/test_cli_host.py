"""The default flow on the host: export to the cache, time PyTorch and ONNX Runtime, reuse."""

import json
import os

import pytest

torch = pytest.importorskip("torch")

from cvnet.benchmarks.cli import main  # noqa: E402
from cvnet.benchmarks.models import cache_dir, prepare_model  # noqa: E402
from cvnet.core.artifact import read_sidecar  # noqa: E402
from cvnet.core.fileio import LOCK_FILE  # noqa: E402

QUICK = ["--arch", "cvnet_tiny", "--input-size", "64", "--batch", "1,2", "--min-time", "0",
         "--warmup", "1"]


def _openvino_installed():
    from cvnet.benchmarks.run import openvino_installed

    return openvino_installed()


@pytest.mark.slow
def test_default_flow_exports_once_and_times_every_installed_runtime(tmp_path, capsys, caplog):
    cache, out = str(tmp_path / "cache"), str(tmp_path / "r.json")
    assert main(QUICK + ["--cache-dir", cache, "--json-out", out, "--csv",
                         str(tmp_path / "r.csv")]) == 0
    assert "--no-verify" not in caplog.text  # nobody passed it (`make demo` said so)
    text = capsys.readouterr().out
    assert "| cvnet_tiny | pytorch | cpu | fp32 | 2 | network |" in text
    assert "| cvnet_tiny | onnxruntime | cpu | fp32 | 2 | network |" in text
    assert "cvnet_tiny onnxruntime/pytorch b2" in text
    with open(out) as handle:
        report = json.load(handle)
    runtimes = {"pytorch", "onnxruntime"} | ({"openvino"} if _openvino_installed() else set())
    assert {r["backend"] for r in report["results"]} == runtimes
    assert all(r["params"] == 53194 and r["gmacs"] > 0 for r in report["results"])
    # every row has its agreement with PyTorch FP32, and the report names the fastest path
    assert all(r["top5_agreement"] is not None and r["agrees"] is not None
               for r in report["results"])
    pytorch = [r for r in report["results"] if r["backend"] == "pytorch"]
    assert all(r["cosine_min"] > 0.999999 and r["agrees"] for r in pytorch)
    assert [f["batch"] for f in report["fastest_cpu_path"]] == [1, 2]
    best = report["fastest_cpu_path"][1]
    assert best["throughput"] == max(r["throughput"] for r in report["results"]
                                     if r["batch"] == 2 and r["agrees"])
    assert text.rstrip().splitlines()[-1].startswith("Fastest CPU path that keeps the rankings: ")
    assert report["environment"]["torch"] == torch.__version__
    assert report["settings"]["torch_threads"]["threads"] >= 1  # what PyTorch ran with, and why
    assert report["settings"]["torch_threads"]["reason"]
    folder = os.path.join(cache, "cvnet_tiny-64x64")
    graphs = sorted((name for name in os.listdir(folder) if name.endswith(".onnx")),
                    key=lambda name: name.endswith(".ort.onnx"))  # the graph as exported first
    assert len(graphs) == 2 and graphs[1].endswith(".ort.onnx")
    assert sorted(os.listdir(folder)) == sorted([LOCK_FILE, "bench.json", "model.pt"] + graphs
                                                + [name + ".json" for name in graphs])
    ort_rows = [r for r in report["results"] if r["backend"] == "onnxruntime"]
    assert ort_rows and all(r["agrees"] for r in ort_rows)  # the rewritten graph keeps rankings
    stamp = os.path.getmtime(os.path.join(folder, graphs[0]))
    prepared = prepare_model("cvnet_tiny", input_size=(64, 64), batch_max=2, ort_graph=True,
                             cache=cache)
    assert os.path.getmtime(prepared.onnx) == stamp  # reused, not exported again
    rewrites = read_sidecar(prepared.ort_onnx + ".json").extra["optimized_for"]["rewrites"]
    assert rewrites["channel_mean"] == rewrites["channel_max"] == rewrites["map_broadcast"] == 12


def test_a_wider_export_leaves_the_one_being_timed_in_place(tmp_path):
    """A second benchmark asking for larger batches exported over model.onnx (after removing
    it) while the first was timing it; the new exports get new names."""
    cache = str(tmp_path / "cache")
    timing = prepare_model("cvnet_tiny", input_size=(32, 32), batch_max=2, ort_graph=True,
                           cache=cache)
    before = {}
    for path in (timing.onnx, timing.ort_onnx):
        with open(path, "rb") as handle:
            before[path] = handle.read()
    bigger = prepare_model("cvnet_tiny", input_size=(32, 32), batch_max=4, ort_graph=True,
                           cache=cache)
    assert bigger.onnx != timing.onnx and read_sidecar(bigger.onnx + ".json").batch_max == 4
    assert bigger.ort_onnx != timing.ort_onnx
    assert read_sidecar(bigger.ort_onnx + ".json").batch_max == 4
    for path, data in before.items():
        with open(path, "rb") as handle:
            assert handle.read() == data  # what the first benchmark times is untouched
    assert read_sidecar(timing.onnx + ".json").batch_max == 2
    again = prepare_model("cvnet_tiny", input_size=(32, 32), batch_max=3, ort_graph=True,
                          cache=cache)
    assert (again.onnx, again.ort_onnx) == (bigger.onnx, bigger.ort_onnx)  # the newest answer


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CVNET_CACHE", str(tmp_path))
    assert cache_dir() == os.path.join(str(tmp_path), "bench")
    assert cache_dir(str(tmp_path / "x")) == str(tmp_path / "x")
    monkeypatch.delenv("CVNET_CACHE")
    assert cache_dir().endswith(os.path.join(".cache", "cvnet", "bench"))


def test_tensorrt_without_an_engine_is_refused(tmp_path, caplog):
    assert main(QUICK + ["--backend", "tensorrt", "--device", "cuda",
                         "--cache-dir", str(tmp_path)]) == 1
    assert "cvnet-build" in caplog.text
    assert not os.listdir(str(tmp_path))  # refused before exporting anything


def test_default_run_prepares_for_the_batches_requested(tmp_path):
    """The H200 run asked for batch 64 and was refused ("runs batches 1..32"): the export's
    batch range and the PyTorch runner's now follow the largest batch asked for."""
    from cvnet.benchmarks.run import default_targets
    from cvnet.engines import open_engine

    targets = default_targets(["cvnet_tiny"], ["torch", "onnxruntime"], device="cpu",
                              precision="fp32", threads=1, input_size=(32, 32), batch_max=64,
                              cache=str(tmp_path))
    for target in targets:
        with open_engine(target.path, **target.options) as runner:
            assert (runner.spec.batch_min, runner.spec.batch_max) == (1, 64), target.backend


def test_a_torch_only_run_exports_nothing(tmp_path, monkeypatch, capsys):
    import cvnet.export.pipeline

    def no_export(*args, **kwargs):
        raise AssertionError("a PyTorch-only run exported to ONNX")

    monkeypatch.setattr(cvnet.export.pipeline, "export_model", no_export)
    cache = str(tmp_path / "cache")
    assert main(["--arch", "cvnet_tiny", "--input-size", "32", "--batch", "2", "--min-time", "0",
                 "--warmup", "0", "--backend", "torch,torch-eager", "--cache-dir", cache,
                 "--threads", "1"]) == 0
    assert sorted(os.listdir(os.path.join(cache, "cvnet_tiny-32x32"))) == [
        LOCK_FILE, "bench.json", "model.pt"]
    text = capsys.readouterr().out
    assert "| cvnet_tiny | pytorch | cpu | fp32 | 2 | network |" in text  # both eager on a CPU
    prepared = prepare_model("cvnet_tiny", input_size=(32, 32), onnx=False, cache=cache)
    assert prepared.onnx is None and prepared.params == 53194  # from bench.json, reused


def test_baselines_of_a_torch_only_run_are_not_exported_and_time_end_to_end(monkeypatch):
    """PPLR alone was a 94 MB ONNX file that a --backend torch run never used; and the
    baselines get end-to-end rows like CVNet."""
    from cvnet.benchmarks import cli, models

    calls, measured = [], []

    def fake_prepare(arch, **kwargs):
        calls.append((arch, kwargs["onnx"]))
        return models.PreparedModel(arch=arch, checkpoint="m.pt", onnx=None, params=1,
                                    gmacs=1.0, input_size=(64, 64))

    monkeypatch.setattr(models, "prepare_model", fake_prepare)
    monkeypatch.setattr(cli, "measure",
                        lambda target, *args, **kwargs: measured.append(kwargs["e2e"]) or [])
    monkeypatch.setattr(cli, "markdown_report", lambda report: "")
    assert main(["--baselines", "--backend", "torch", "--e2e", "--min-time", "0"]) == 0
    assert len(calls) == 9 and not any(onnx for _, onnx in calls)
    assert measured == [True] * 9


@pytest.fixture(scope="module")
def trained_at_64(tmp_path_factory):
    """A cvnet_tiny checkpoint as cvnet-train writes it after a 64x64 run."""
    from cvnet.models import build_model
    from cvnet.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("run") / "model.pt")
    save_checkpoint(path, build_model("cvnet_tiny", num_classes=4), arch="cvnet_tiny",
                    model_kwargs={"num_classes": 4}, epoch=1, config={"img_size": 64})
    return path


def _timed_input(argv):
    """The (height, width) cvnet-bench's command line would time its --engine .pt file at."""
    from cvnet.benchmarks.cli import build_parser, plan_targets
    from cvnet.engines import open_engine

    (target,), _ = plan_targets(build_parser().parse_args(argv), threads=1)
    with open_engine(target.path, **target.options) as runner:
        return runner.spec.batch_shape(1)[2:]


def test_a_checkpoint_is_timed_at_the_size_it_was_trained_at(trained_at_64, caplog):
    assert _timed_input(["--engine", trained_at_64]) == (64, 64)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert _timed_input(["--engine", trained_at_64, "--input-size", "32"]) == (32, 32)
    assert any("--input-size 32x32 differs from the 64x64" in r.getMessage() and
               trained_at_64 in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
