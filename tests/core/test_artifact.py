"""The sidecar contract: what the exporter writes, a Python 3.6 device reads back and checks."""

import json
import os

import pytest

from cvnet.core.artifact import (FORMAT_VERSION, IN_GRAPH, ArtifactMetadata, check_artifact_file,
                                 metadata_from_dict, metadata_from_props, read_sidecar,
                                 sidecar_path, sidecar_text, to_metadata_props)
from cvnet.core.errors import MetadataError
from cvnet.core.fileio import sha256_bytes, write_bytes_atomic, write_text_atomic
from cvnet.core.preprocess import PreprocessConfig

pytestmark = pytest.mark.device

SHA = "ab" * 32


def write_sidecar(path, metadata):
    """What every writer does (cvnet-export, cvnet-build): validate, render, write atomically."""
    return write_text_atomic(path, sidecar_text(metadata, source=path))


def sample(**changes):
    """A valid sidecar object like cvnet-export writes, with ``changes`` applied."""
    data = {
        "format": "cvnet-artifact", "format_version": FORMAT_VERSION, "artifact_type": "onnx",
        "file": "cvnet.onnx", "model": "CVNet", "variant": "cvnet", "model_kwargs": {},
        "param_count": 4360828, "input_name": "images", "input_layout": "NCHW",
        "input_dtype": "float32", "input_height": 256, "input_width": 256,
        "channel_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "output_name": "embeddings", "embedding_dim": 1024, "output_l2_normalized": False,
        "opset": 13, "ir_version": 7, "dynamic_batch": True, "batch_min": 1, "batch_max": 32,
        "graph_precision": "fp32", "target_tensorrt": "8.2", "weights_sha256": SHA,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)", "torch_version": "2.13.0",
        "onnx_version": "1.23.2", "cvnet_version": "0.1.0", "untrained": False,
        "created": "2026-01-01T00:00:00+00:00", "onnx_sha256": SHA,
        "verification": {"passed": True, "cases": [{"batch": 1, "cosine_min": 0.99999}]},
    }
    data.update(changes)
    return data


def test_sidecar_sits_next_to_the_artefact():
    assert sidecar_path("out/cvnet.onnx") == "out/cvnet.onnx.json"


def test_written_sidecar_reads_back_the_same(tmp_path):
    path = sidecar_path(str(tmp_path / "cvnet.onnx"))
    write_sidecar(path, sample())
    record = read_sidecar(path)
    assert isinstance(record, ArtifactMetadata)
    assert record.to_dict() == sample(source_checkpoint=None, checkpoint_sha256=None,
                                      checkpoint_epoch=None, checkpoint_metrics=None,
                                      graph_mean=None, graph_std=None)
    assert record.mean == (0.485, 0.456, 0.406) and record.embedding_dim == 1024
    assert read_sidecar(str(tmp_path / "cvnet.onnx")) == record  # the artefact's path works too
    with open(path) as handle:
        assert list(json.load(handle))[:3] == ["format", "format_version", "artifact_type"]


def test_record_round_trips_through_write(tmp_path):
    record = metadata_from_dict(sample())
    path = str(tmp_path / "m.onnx.json")
    write_sidecar(path, record)
    assert read_sidecar(path) == record


def test_unknown_keys_from_newer_writers_are_kept(tmp_path):
    path = str(tmp_path / "cvnet.plan.json")
    write_sidecar(path, sample(precision="fp16", gpu_name="NVIDIA Tegra X1"))
    record = read_sidecar(path)
    assert record.extra == {"precision": "fp16", "gpu_name": "NVIDIA Tegra X1"}
    assert record.to_dict()["gpu_name"] == "NVIDIA Tegra X1"


def test_preprocess_config_for_the_device():
    record = metadata_from_dict(sample(input_height=256, input_width=128))
    assert not record.preprocess_in_graph
    assert record.preprocess_config() == PreprocessConfig(256, 128, (0.485, 0.456, 0.406),
                                                          (0.229, 0.224, 0.225))
    in_graph = metadata_from_dict(sample(mean=IN_GRAPH, std=IN_GRAPH, input_layout="NHWC",
                                         input_dtype="uint8", graph_mean=[0.5, 0.5, 0.5],
                                         graph_std=[0.2, 0.2, 0.2]))
    assert in_graph.preprocess_in_graph and in_graph.graph_mean == (0.5, 0.5, 0.5)
    with pytest.raises(MetadataError, match="resize_rgb"):
        in_graph.preprocess_config()


@pytest.mark.parametrize("changes, message", [
    ({"format": "something-else"}, "is this a cvnet sidecar"),
    ({"format_version": FORMAT_VERSION + 1}, "update cvnet"),
    ({"input_layout": "CHW"}, "'input_layout' is 'CHW', expected NCHW or NHWC"),
    ({"input_dtype": "float16"}, "expected float32 or uint8"),
    ({"input_height": 0}, "'input_height' is 0"),
    ({"mean": [0.5, 0.5]}, "'mean'"),
    ({"std": [0.2, 0.0, 0.2]}, "'std'"),
    ({"output_l2_normalized": "no"}, "true or false"),
    ({"weights_sha256": "abc"}, "hex"),
    ({"batch_min": 8, "batch_max": 4}, "batch_min 8 is larger than batch_max 4"),
    ({"mean": IN_GRAPH}, "both be lists"),
    ({"mean": IN_GRAPH, "std": IN_GRAPH}, "takes NHWC"),
    ({"file": "out/cvnet.onnx"}, "without folders"),
])
def test_invalid_sidecars_are_refused_with_the_problem(tmp_path, changes, message):
    path = str(tmp_path / "cvnet.onnx.json")
    with open(path, "w") as handle:
        json.dump(sample(**changes), handle)
    with pytest.raises(MetadataError) as err:
        read_sidecar(path)
    assert path in str(err.value) and message in str(err.value)


def test_missing_keys_are_listed(tmp_path):
    data = sample()
    del data["embedding_dim"], data["opset"]
    with pytest.raises(MetadataError, match="missing keys: embedding_dim, opset"):
        metadata_from_dict(data, source="x.json")


def test_missing_and_broken_files_name_the_file(tmp_path):
    with pytest.raises(MetadataError, match="cannot read the sidecar"):
        read_sidecar(str(tmp_path / "none.onnx.json"))
    broken = tmp_path / "broken.onnx.json"
    broken.write_text('{"format": "cvnet-artifact",')
    with pytest.raises(MetadataError, match="broken.onnx.json: not valid JSON"):
        read_sidecar(str(broken))
    broken.write_text("[1, 2]")
    with pytest.raises(MetadataError, match="expected a JSON object, got list"):
        read_sidecar(str(broken))


def test_writer_validates_before_writing(tmp_path):
    path = str(tmp_path / "cvnet.onnx.json")
    with pytest.raises(MetadataError, match="'embedding_dim' is -1"):
        write_sidecar(path, sample(embedding_dim=-1))
    assert os.listdir(str(tmp_path)) == []


def test_metadata_props_carry_everything_but_the_file_hash():
    record = metadata_from_dict(sample())
    props = to_metadata_props(record)
    assert "onnx_sha256" not in props and json.loads(props["embedding_dim"]) == 1024
    assert all(isinstance(v, str) for v in props.values())
    assert metadata_from_props(props) == record._replace(onnx_sha256=None)
    with pytest.raises(MetadataError, match="not JSON"):
        metadata_from_props(dict(props, opset="thirteen"))
    # Another tool's entry in the same graph (onnxsim writes plain text) is kept, not refused.
    simplified = metadata_from_props(dict(props, **{"onnxsim.assigned_node_names": ""}))
    assert simplified.extra["onnxsim.assigned_node_names"] == ""
    assert simplified._replace(extra=record.extra) == record._replace(onnx_sha256=None)


def test_artefact_file_is_checked_against_its_sidecar(tmp_path):
    onnx_path = str(tmp_path / "cvnet.onnx")
    write_bytes_atomic(onnx_path, b"graph bytes")
    record = metadata_from_dict(sample(onnx_sha256=sha256_bytes(b"graph bytes")))
    check_artifact_file(record, onnx_path)
    write_bytes_atomic(onnx_path, b"another export")
    with pytest.raises(MetadataError, match="copy the .onnx and its .onnx.json together"):
        check_artifact_file(record, onnx_path)


def test_sidecar_text_is_the_file_content(tmp_path):
    path = str(tmp_path / "cvnet.onnx.json")
    write_sidecar(path, sample())
    with open(path) as handle:
        assert handle.read() == sidecar_text(sample())
