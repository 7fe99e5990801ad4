"""cvnet-export end to end through main(): every option, every bad input, the metadata written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cvnet.core.artifact import (IN_GRAPH, ArtifactMetadata, metadata_from_props,  # noqa: E402
                                 read_sidecar)
from cvnet.core import parity  # noqa: E402
from cvnet.core.fileio import sha256_file  # noqa: E402
from cvnet.export.cli import build_parser, main, options_from_args  # noqa: E402
from cvnet.models import build_model, list_models  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint, state_dict_sha256  # noqa: E402
from tests.device_modules import ROOT  # noqa: E402

FAST = ["--input-size", "32", "--verify-images", "4"]
QUICK = FAST + ["--no-verify"]  # for tests about something other than verification


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A cvnet_tiny training checkpoint with 5 ID classes."""
    torch.manual_seed(0)
    model = build_model("cvnet_tiny", num_classes=5)
    path = str(tmp_path_factory.mktemp("ckpt") / "best.pt")
    save_checkpoint(path, model, arch="cvnet_tiny", model_kwargs={"num_classes": 5}, epoch=3,
                    metrics={"mAP": 0.25, "rank1": 0.5}, config={"lr": 0.065})
    return path, model


@pytest.fixture
def out(tmp_path):
    """An empty output folder; ``out.files()`` lists what is in it."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _files(folder):
    return sorted(os.listdir(str(folder)))


def _export(args, folder, name="cvnet.onnx"):
    return main(list(args) + ["-o", str(folder / name)])


def test_checkpoint_export_writes_onnx_sidecar_and_metadata(checkpoint, out, capsys):
    path, model = checkpoint
    assert _export([path] + FAST, out) == 0
    assert _files(out) == ["cvnet.onnx", "cvnet.onnx.json"]
    onnx_path = str(out / "cvnet.onnx")
    meta = read_sidecar(onnx_path + ".json")
    assert (meta.variant, meta.model, meta.model_kwargs) == ("cvnet_tiny", "CVNet",
                                                            {"num_classes": 5})
    assert meta.param_count == sum(p.numel() for n, p in model.named_parameters()
                                   if "classifier" not in n)
    assert (meta.input_name, meta.input_layout, meta.input_dtype) == ("images", "NCHW", "float32")
    assert (meta.input_height, meta.input_width, meta.channel_order) == (32, 32, "RGB")
    assert meta.mean == (0.485, 0.456, 0.406) and meta.std == (0.229, 0.224, 0.225)
    assert (meta.output_name, meta.embedding_dim, meta.output_l2_normalized) == ("embeddings",
                                                                                 96, False)
    assert (meta.opset, meta.ir_version, meta.target_tensorrt) == (13, 7, "8.2")
    assert (meta.dynamic_batch, meta.batch_min, meta.batch_max) == (True, 1, 32)
    assert meta.graph_precision == "fp32" and not meta.untrained
    assert meta.onnx_sha256 == sha256_file(onnx_path)
    assert meta.weights_sha256 == state_dict_sha256(model.state_dict())
    assert meta.source_checkpoint == "best.pt" and meta.checkpoint_sha256 == sha256_file(path)
    assert meta.checkpoint_epoch == 3 and meta.checkpoint_metrics == {"mAP": 0.25, "rank1": 0.5}
    assert meta.torch_version == torch.__version__ and meta.onnx_version == onnx.__version__
    assert "dynamo=False" in meta.exporter and meta.created.endswith("+00:00")
    verification = meta.verification
    assert verification["passed"] and verification["min_cosine"] == 0.9999
    assert [c["batch"] for c in verification["cases"]] == [1, 8]
    assert all(c["images"] == 4 and c["cosine_min"] >= 0.9999 and c["top1_agreement"] == 1.0
               for c in verification["cases"])
    # The same keys, except the file's own hash, are inside the ONNX file.
    graph = onnx.load(onnx_path)
    from_props = metadata_from_props({p.key: p.value for p in graph.metadata_props})
    assert from_props == meta._replace(onnx_sha256=None)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["embedding_dim"]) == 96
    printed = capsys.readouterr().out
    assert "wrote " + onnx_path in printed and "| 8 | 4 |" in printed and "export time" in printed
    with open(onnx_path + ".json") as handle:
        keys = list(json.load(handle))
    assert keys == [f for f in ArtifactMetadata._fields if f != "extra"]  # the contract, in order


def test_plain_state_dict_needs_arch(checkpoint, out, caplog):
    path = str(out.parent / "weights.pt")
    torch.save(checkpoint[1].state_dict(), path)
    assert _export([path] + FAST, out) == 1
    assert "plain state_dict" in caplog.text and "--arch" in caplog.text
    assert _files(out) == []
    assert _export([path, "--arch", "cvnet_tiny"] + QUICK, out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert meta.model_kwargs == {"num_classes": 5} and meta.checkpoint_epoch is None


def test_random_init_is_marked_untrained_and_seeded(out):
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + QUICK, out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert meta.untrained and meta.source_checkpoint is None and meta.checkpoint_sha256 is None
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + QUICK, out, name="again.onnx") == 0
    assert read_sidecar(str(out / "again.onnx.json")).weights_sha256 == meta.weights_sha256
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--seed", "1"] + QUICK, out,
                   name="other.onnx") == 0
    assert read_sidecar(str(out / "other.onnx.json")).weights_sha256 != meta.weights_sha256


def test_json_output_is_the_sidecar(out, capsys):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--json"] + QUICK, out) == 0
    printed = json.loads(capsys.readouterr().out)
    with open(str(out / "cvnet.onnx.json")) as handle:
        assert printed == json.load(handle)


def test_static_batch(out):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--batch", "4"] + FAST, out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.dynamic_batch, meta.batch_min, meta.batch_max) == (False, 4, 4)
    assert [c["batch"] for c in meta.verification["cases"]] == [4]
    dims = onnx.load(str(out / "cvnet.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4


def test_dynamic_batch_range_is_recorded_and_verified(out):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--dynamic-batch", "2:16"] + FAST,
                   out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.dynamic_batch, meta.batch_min, meta.batch_max) == (True, 2, 16)
    assert [c["batch"] for c in meta.verification["cases"]] == [2, 8]


def test_opset_17_needs_a_newer_tensorrt(out, caplog):
    args = ["--random-init", "--arch", "cvnet_tiny", "--opset", "17"] + QUICK
    assert _export(args, out) == 1
    assert "pass --trt-version 8.6 (or newer)" in caplog.text and _files(out) == []
    assert _export(args + ["--trt-version", "8.6"], out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.opset, meta.target_tensorrt) == (17, "8.6")


def test_opset_the_exporter_cannot_write(out, caplog):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--opset", "99",
                    "--trt-version", "10.0"] + FAST, out) == 1
    assert "opset 99 cannot be produced by the installed torch" in caplog.text
    assert _files(out) == []


def test_preprocess_in_graph_for_tensorrt_8_2_takes_float_pixels(out, caplog):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--preprocess-in-graph"] + FAST,
                   out) == 0
    assert "TensorRT 8.2 has no uint8 network inputs" in caplog.text
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.input_layout, meta.input_dtype, meta.mean, meta.std) == ("NHWC", "float32",
                                                                          IN_GRAPH, IN_GRAPH)
    assert meta.graph_mean == (0.485, 0.456, 0.406) and meta.preprocess_in_graph
    assert meta.verification["input_path"].startswith("in graph (float32")


def test_preprocess_in_graph_takes_uint8_where_tensorrt_can(out):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--preprocess-in-graph",
                    "--trt-version", "8.6"] + FAST, out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.input_layout, meta.input_dtype) == ("NHWC", "uint8")
    assert meta.verification["passed"] and meta.verification["input_path"].startswith("in graph")
    session = ort.InferenceSession(str(out / "cvnet.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.zeros((3, 32, 32, 3), np.uint8)
    assert session.run(None, {"images": pixels})[0].shape == (3, 96)


@pytest.mark.parametrize("args, message", [
    (["--preprocess-in-graph", "--input-dtype", "uint8"], "TensorRT 8.2 cannot take a uint8 input"),
    (["--input-dtype", "float32"], "needs --preprocess-in-graph"),
    (["--input-size", "48"], "multiples of 32"),
    (["--dynamic-batch", "8:4"], "1 <= MIN <= MAX"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--verify-images", "1"], "--verify-images must be >= 2"),
    (["--model-kwargs", '{"widths": [16, 16]}'], "2 DFC stages need 8 filtration ops"),
    (["--model-kwargs", '{"colour": 1}'], "do not fit 'cvnet_tiny'"),
])
def test_contradictory_options_exit_1(out, caplog, args, message):
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + FAST + args, out) == 1
    assert message in caplog.text and _files(out) == []


def test_half_writes_an_fp16_graph_verified_at_fp16_tolerance(out):
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--precision", "fp16"] + FAST,
                   out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert meta.graph_precision == "fp16" and meta.input_dtype == "float32"
    assert meta.verification["min_cosine"] == 0.999 and meta.verification["passed"]
    graph = onnx.load(str(out / "cvnet.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)


def test_no_verify_records_no_figures(out, caplog):
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + QUICK, out) == 0
    assert read_sidecar(str(out / "cvnet.onnx.json")).verification is None
    assert "verification skipped" in caplog.text


def test_failed_verification_writes_nothing_and_keeps_the_old_export(out, caplog, monkeypatch):
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + QUICK, out) == 0
    before = {name: sha256_file(str(out / name)) for name in _files(out)}
    monkeypatch.setitem(parity.MIN_COSINE, "fp32", 1.5)  # unreachable
    assert _export(["--random-init", "--arch", "cvnet_tiny", "--seed", "1"] + FAST, out) == 1
    assert "does not reproduce PyTorch's embeddings" in caplog.text
    assert "nothing was written" in caplog.text
    assert {name: sha256_file(str(out / name)) for name in _files(out)} == before


def _write(path, data):
    with open(str(path), "wb") as handle:
        handle.write(data)
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing.pt"), "no such file"),
    (lambda d: _write(d / "notes.txt", b"not weights\n"), "it is a text file"),
    (lambda d: _write(d / "half.pt", b"PK\x03\x04" + b"\x00" * 64), "truncated or corrupt"),
    (lambda d: _torch_save(d / "module.pt", torch.nn.Linear(2, 2)), "arbitrary Python objects"),
])
def test_bad_checkpoint_files_exit_1_with_one_message(out, caplog, make, message):
    assert _export([make(out.parent)] + FAST, out) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage()
    assert _files(out) == []


def _torch_save(path, obj):
    torch.save(obj, str(path))
    return str(path)


def test_an_onnx_file_is_not_a_checkpoint(out, caplog):
    assert _export(["--random-init", "--arch", "cvnet_tiny"] + QUICK, out, name="model.onnx") == 0
    target = out.parent / "again"
    target.mkdir()
    assert _export([str(out / "model.onnx")] + FAST, target) == 1
    assert "looks like an ONNX model" in caplog.text and _files(target) == []


def test_weights_that_do_not_fit_list_the_keys(checkpoint, out, caplog):
    assert _export([checkpoint[0], "--model-kwargs", '{"part_channels": 8}'] + FAST, out) == 1
    assert "shape mismatches" in caplog.text and "part_conv.weight" in caplog.text
    state = dict(checkpoint[1].state_dict())
    state["head.weight"] = state.pop("part_conv.weight")
    weights = _torch_save(out.parent / "renamed.pt", state)
    assert _export([weights, "--arch", "cvnet_tiny"] + FAST, out) == 1
    assert "1 missing keys: part_conv.weight" in caplog.text
    assert "1 unexpected keys: head.weight" in caplog.text
    assert _files(out) == []


def test_unknown_arch(checkpoint, out, caplog, capsys):
    with pytest.raises(SystemExit) as err:
        main([checkpoint[0], "--arch", "cvnet_huge"])
    assert err.value.code == 2 and "invalid choice: 'cvnet_huge'" in capsys.readouterr().err
    raw = torch.load(checkpoint[0], weights_only=True)
    raw["arch"] = "cvnet_huge"
    renamed = _torch_save(out.parent / "renamed.pt", raw)
    assert _export([renamed] + FAST, out) == 1
    assert "unknown arch 'cvnet_huge'; known models: " in caplog.text
    assert "cvnet_tiny" in caplog.text


@pytest.mark.parametrize("where", ["missing_folder", "folder"])
def test_unwritable_output_exits_1_before_loading(checkpoint, out, caplog, where):
    target = out / "no" / "cvnet.onnx" if where == "missing_folder" else out
    assert main([checkpoint[0], "-o", str(target)] + FAST) == 1
    assert "cannot write" in caplog.text and _files(out) == []


def test_checkpoint_and_random_init_exclude_each_other(checkpoint, out, caplog):
    assert _export([checkpoint[0], "--random-init", "--arch", "cvnet_tiny"] + FAST, out) == 1
    assert "do not also pass a checkpoint" in caplog.text
    assert _export(["--random-init"] + FAST, out) == 1
    assert "--random-init needs --arch" in caplog.text
    assert _export(FAST, out) == 1
    assert "no checkpoint given" in caplog.text


def test_python_m_export_shows_help():
    result = subprocess.run([sys.executable, "-m", "cvnet.export", "--help"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    assert result.returncode == 0 and "--preprocess-in-graph" in result.stdout


@pytest.mark.slow
def test_paper_model_exports_at_256_and_verifies(out, capsys):
    # The full model at its full size; 4 verification images instead of the default 16 (the
    # default is checked below without an export): each costs two 256x256 forwards per batch size.
    assert _export(["--random-init", "--arch", "cvnet", "--verify-images", "4"], out) == 0
    meta = read_sidecar(str(out / "cvnet.onnx.json"))
    assert (meta.embedding_dim, meta.input_height, meta.opset, meta.ir_version) == (1024, 256,
                                                                                    13, 7)
    assert 4.18e6 <= meta.param_count <= 4.62e6
    assert meta.verification["passed"] and len(meta.verification["cases"]) == 2
    assert "| 1 | 4 |" in capsys.readouterr().out


def test_defaults_verify_on_16_images_at_the_trained_size_for_tensorrt_8_2():
    options = options_from_args(build_parser().parse_args(["model.pt"]))
    # No size given: the export takes the checkpoint's trained size (256x256 when it has none).
    assert (options.verify, options.verify_images, options.input_size) == (True, 16, None)
    assert (options.opset, options.trt_version, options.dynamic_batch) == (13, "8.2", (1, 32))


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models("cvnet*"))
def test_every_variant_exports_and_verifies(out, arch):
    assert _export(["--random-init", "--arch", arch, "--input-size", "64", "--verify-images", "4"],
                   out) == 0
    assert read_sidecar(str(out / "cvnet.onnx.json")).verification["passed"]


def test_engine_flag_without_tensorrt_keeps_the_onnx_and_says_why(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; this test covers machines without it")
    except ImportError:
        pass
    out = str(tmp_path / "tiny.onnx")
    assert main(["--random-init", "--arch", "cvnet_tiny", "--input-size", "64", "--no-verify",
                 "-o", out, "--build-engine"]) == 1
    assert os.path.exists(out) and os.path.exists(out + ".json")
    assert "no engine was built" in caplog.text and "tensorrt" in caplog.text.lower()
    assert not os.path.exists(str(tmp_path / "tiny.plan"))
