"""The artefact contract: the sidecar next to every exported file (torch-free, Python 3.6).

``cvnet.onnx`` travels with ``cvnet.onnx.json``, and ``cvnet.plan`` with ``cvnet.plan.json``
(the engine builder's: the ONNX sidecar plus an ``engine`` block, :mod:`cvnet.engines.metadata`).
A device reads the sidecar instead of hard-coding the input size, normalisation or embedding
size, so the sidecar is the only thing device code knows about the model.

The sidecar is a JSON object whose keys are the fields of :class:`ArtifactMetadata` (the same
names, in that order); keys a reader does not know are kept in ``extra``, so a newer writer (the
engine builder adds precision, TensorRT version, GPU...) does not break an older reader. Example
for ``cvnet-export model.pt``::

    {"format": "cvnet-artifact", "format_version": 1, "artifact_type": "onnx",
     "file": "cvnet.onnx", "model": "CVNet", "variant": "cvnet", "model_kwargs": {},
     "param_count": 4360828, "input_name": "images", "input_layout": "NCHW",
     "input_dtype": "float32", "input_height": 256, "input_width": 256, "channel_order": "RGB",
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "output_name": "embeddings",
     "embedding_dim": 1024, "output_l2_normalized": false, "opset": 13, "ir_version": 7,
     "dynamic_batch": true, "batch_min": 1, "batch_max": 32, "graph_precision": "fp32",
     "target_tensorrt": "8.2", "weights_sha256": "...", "exporter": "...", ...}

How a device feeds the graph:

- ``mean``/``std`` are lists: the graph takes ``(N, 3, H, W)`` float32 from
  :func:`cvnet.core.preprocess.preprocess_batch` with that mean/std (``preprocess_config()``).
- ``mean``/``std`` are ``"in graph"``: the graph takes ``(N, H, W, 3)`` RGB pixel values 0-255
  (``input_dtype`` uint8, or float32 holding the same values) from
  :func:`cvnet.core.preprocess.resize_rgb`, and normalises them itself (``graph_mean``/``graph_std``
  record the constants it uses).

The output is never L2-normalised inside the graph; use :func:`cvnet.core.preprocess.l2_normalize`.
"""

import json
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from cvnet.core.errors import MetadataError
from cvnet.core.fileio import sha256_file

FORMAT = "cvnet-artifact"
#: Bump when a field changes meaning or a required field is added; readers refuse newer versions.
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".json"
#: The value of ``mean`` and ``std`` when the graph normalises its input itself.
IN_GRAPH = "in graph"
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "uint8")
PRECISIONS = ("fp32", "fp16")

MeanStd = Union[Tuple[float, float, float], str]


class ArtifactMetadata(NamedTuple):
    """What a device needs to know about an exported model; one sidecar, one record.

    Attributes:
        format: Always ``"cvnet-artifact"``.
        format_version: Schema version (:data:`FORMAT_VERSION`).
        artifact_type: ``"onnx"``, or ``"plan"`` for the engine builder's sidecar.
        file: File name of the artefact the sidecar describes, e.g. ``"cvnet.onnx"``.
        model: Model family, ``"CVNet"``.
        variant: Registered architecture name, e.g. ``"cvnet"`` or ``"cvnet_tiny"``.
        model_kwargs: Constructor options the model was built with (JSON types).
        param_count: Model parameters without ID classifiers (what the paper counts).
        input_name: Name of the graph's single input.
        input_layout: ``"NCHW"``, or ``"NHWC"`` when preprocessing is in the graph.
        input_dtype: ``"float32"``, or ``"uint8"`` when preprocessing is in the graph.
        input_height: Input height in pixels.
        input_width: Input width in pixels.
        channel_order: ``"RGB"``.
        mean: Per-channel mean (RGB, images scaled to [0, 1]) the device applies, or
            ``"in graph"``.
        std: Per-channel standard deviation, or ``"in graph"``.
        output_name: Name of the graph's single output, ``(N, embedding_dim)`` float32.
        embedding_dim: Length of one embedding.
        output_l2_normalized: Whether the graph L2-normalises its output (cvnet's never does).
        opset: Default-domain ONNX opset of the graph.
        ir_version: ONNX IR version of the file.
        dynamic_batch: Whether the batch axis is symbolic.
        batch_min: Smallest batch the artefact is meant for (engine profiles use it).
        batch_max: Largest batch the artefact is meant for.
        graph_precision: ``"fp32"``, or ``"fp16"`` for an FP16-typed graph with FP32 I/O.
        target_tensorrt: TensorRT version whose ONNX operator list the graph was checked against.
        weights_sha256: SHA-256 of the model's weights (names, dtypes, shapes and bytes).
        exporter: The exporter used, e.g. ``"torch.onnx.export (TorchScript, dynamo=False)"``.
        torch_version: torch version used to export.
        onnx_version: onnx package version used to check the graph.
        cvnet_version: cvnet version that wrote the artefact.
        untrained: True when the weights are a random initialisation (benchmarking only).
        created: UTC time of writing, ISO 8601.
        onnx_sha256: SHA-256 of the ONNX file (absent from the ONNX file's own metadata_props,
            which cannot contain its own hash).
        source_checkpoint: File name of the checkpoint the weights came from.
        checkpoint_sha256: SHA-256 of that checkpoint file.
        checkpoint_epoch: Training epoch recorded in the checkpoint.
        checkpoint_metrics: Metrics recorded in the checkpoint, e.g. ``{"mAP": 0.41}``.
        graph_mean: With in-graph preprocessing, the mean the graph applies.
        graph_std: With in-graph preprocessing, the std the graph applies.
        verification: Parity figures of the export check (see ``cvnet.export.verify``), or None when
            verification was skipped.
        extra: Keys this reader does not know (written by newer tools), kept as they are.
    """

    format: str
    format_version: int
    artifact_type: str
    file: str
    model: str
    variant: str
    model_kwargs: Dict[str, Any]
    param_count: int
    input_name: str
    input_layout: str
    input_dtype: str
    input_height: int
    input_width: int
    channel_order: str
    mean: MeanStd
    std: MeanStd
    output_name: str
    embedding_dim: int
    output_l2_normalized: bool
    opset: int
    ir_version: int
    dynamic_batch: bool
    batch_min: int
    batch_max: int
    graph_precision: str
    target_tensorrt: str
    weights_sha256: str
    exporter: str
    torch_version: str
    onnx_version: str
    cvnet_version: str
    untrained: bool
    created: str
    onnx_sha256: Optional[str] = None
    source_checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    checkpoint_epoch: Optional[int] = None
    checkpoint_metrics: Optional[Dict[str, Any]] = None
    graph_mean: Optional[Tuple[float, float, float]] = None
    graph_std: Optional[Tuple[float, float, float]] = None
    verification: Optional[Dict[str, Any]] = None
    extra: Optional[Dict[str, Any]] = None

    @property
    def preprocess_in_graph(self) -> bool:
        """Whether the graph does cast, scaling, mean/std and layout change itself."""
        return self.mean == IN_GRAPH

    def preprocess_config(self):
        """The :class:`cvnet.core.preprocess.PreprocessConfig` a device applies before the graph.

        Raises:
            MetadataError: The graph normalises its input itself; feed it
                :func:`cvnet.core.preprocess.resize_rgb` output instead.
        """
        from cvnet.core.preprocess import PreprocessConfig  # cv2 only when asked

        if self.preprocess_in_graph:
            raise MetadataError("{} normalises its input in the graph: feed it resize_rgb() "
                                "output ({}x{} RGB, {}), not preprocess_batch()".format(
                                    self.file, self.input_height, self.input_width,
                                    self.input_dtype))
        return PreprocessConfig(self.input_height, self.input_width, tuple(self.mean),
                                tuple(self.std))

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of the sidecar: the fields in order, then the ``extra`` keys."""
        data = self._asdict()
        extra = data.pop("extra")
        out = {key: _jsonable(value) for key, value in data.items()}
        out.update(extra or {})
        return out


REQUIRED_FIELDS = tuple(name for name in ArtifactMetadata._fields
                        if name not in ArtifactMetadata._field_defaults)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_triple(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^[0-9a-f]{64}$", value) is not None


# (field, test, what is expected): every check the reader and the writer apply.
_CHECKS = (
    ("format", lambda v: v == FORMAT, repr(FORMAT)),
    ("format_version", _is_int, "an integer"),
    ("artifact_type", lambda v: isinstance(v, str) and v, "a non-empty string"),
    ("file", lambda v: isinstance(v, str) and v and os.path.basename(v) == v,
     "a file name without folders"),
    ("model", lambda v: isinstance(v, str) and v, "a non-empty string"),
    ("variant", lambda v: isinstance(v, str) and v, "a non-empty string"),
    ("model_kwargs", lambda v: isinstance(v, dict), "an object"),
    ("param_count", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("input_name", lambda v: isinstance(v, str) and v, "a non-empty string"),
    ("input_layout", lambda v: v in LAYOUTS, " or ".join(LAYOUTS)),
    ("input_dtype", lambda v: v in INPUT_DTYPES, " or ".join(INPUT_DTYPES)),
    ("input_height", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("input_width", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("channel_order", lambda v: v == "RGB", "'RGB'"),
    ("mean", lambda v: v == IN_GRAPH or _is_triple(v), "3 numbers or {!r}".format(IN_GRAPH)),
    ("std", lambda v: v == IN_GRAPH or (_is_triple(v) and all(x > 0 for x in v)),
     "3 positive numbers or {!r}".format(IN_GRAPH)),
    ("output_name", lambda v: isinstance(v, str) and v, "a non-empty string"),
    ("embedding_dim", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("output_l2_normalized", lambda v: isinstance(v, bool), "true or false"),
    ("opset", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("ir_version", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("dynamic_batch", lambda v: isinstance(v, bool), "true or false"),
    ("batch_min", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("batch_max", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("graph_precision", lambda v: v in PRECISIONS, " or ".join(PRECISIONS)),
    ("target_tensorrt", lambda v: isinstance(v, str) and v, "a version string"),
    ("weights_sha256", _is_sha256, "64 lower-case hex digits"),
    ("exporter", lambda v: isinstance(v, str), "a string"),
    ("torch_version", lambda v: isinstance(v, str), "a string"),
    ("onnx_version", lambda v: isinstance(v, str), "a string"),
    ("cvnet_version", lambda v: isinstance(v, str), "a string"),
    ("untrained", lambda v: isinstance(v, bool), "true or false"),
    ("created", lambda v: isinstance(v, str), "an ISO 8601 time"),
    ("onnx_sha256", lambda v: v is None or _is_sha256(v), "64 lower-case hex digits"),
    ("source_checkpoint", lambda v: v is None or isinstance(v, str), "a file name"),
    ("checkpoint_sha256", lambda v: v is None or _is_sha256(v), "64 lower-case hex digits"),
    ("checkpoint_epoch", lambda v: v is None or _is_int(v), "an integer"),
    ("checkpoint_metrics", lambda v: v is None or isinstance(v, dict), "an object"),
    ("graph_mean", lambda v: v is None or _is_triple(v), "3 numbers"),
    ("graph_std", lambda v: v is None or _is_triple(v), "3 numbers"),
    ("verification", lambda v: v is None or isinstance(v, dict), "an object"),
)


def _problems(data: Dict[str, Any]) -> List[str]:
    """Everything wrong with a sidecar object, one line each (empty when it is valid)."""
    if data.get("format") != FORMAT:
        return ["'format' is {!r}, expected {!r} (is this a cvnet sidecar?)".format(
            data.get("format"), FORMAT)]
    version = data.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        return ["format_version {} is newer than this cvnet reads ({}); update cvnet on this "
                "machine".format(version, FORMAT_VERSION)]
    problems = []
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        problems.append("missing keys: {}".format(", ".join(missing)))
    for name, test, expected in _CHECKS:
        if name in data and not test(data[name]):
            problems.append("{!r} is {!r}, expected {}".format(name, data[name], expected))
    if not missing and not problems:
        if _is_int(data["batch_min"]) and data["batch_min"] > data["batch_max"]:
            problems.append("batch_min {} is larger than batch_max {}".format(
                data["batch_min"], data["batch_max"]))
        if (data["mean"] == IN_GRAPH) != (data["std"] == IN_GRAPH):
            problems.append("mean and std must both be lists or both be {!r}".format(IN_GRAPH))
        if data["mean"] == IN_GRAPH and data["input_layout"] != "NHWC":
            problems.append("in-graph preprocessing takes NHWC input, got {}".format(
                data["input_layout"]))
    return problems


def _tuple_or_value(value: Any) -> Any:
    return tuple(float(v) for v in value) if isinstance(value, list) else value


def metadata_from_dict(data: Dict[str, Any], source: str = "<metadata>") -> ArtifactMetadata:
    """Validates a sidecar object and returns it as a record.

    Args:
        data: The parsed JSON object.
        source: Where it came from, for error messages (a file name).

    Raises:
        MetadataError: Naming ``source`` and every problem found.
    """
    if not isinstance(data, dict):
        raise MetadataError("{}: expected a JSON object, got {}".format(
            source, type(data).__name__))
    problems = _problems(data)
    if problems:
        raise MetadataError("{}: invalid cvnet sidecar: {}; re-export the model to write a "
                            "valid one".format(source, "; ".join(problems)))
    known = {name: data[name] for name in ArtifactMetadata._fields if name in data}
    for name in ("mean", "std", "graph_mean", "graph_std"):
        if name in known:
            known[name] = _tuple_or_value(known[name])
    known["extra"] = {key: value for key, value in data.items()
                      if key not in ArtifactMetadata._fields}
    return ArtifactMetadata(**known)


def sidecar_path(artifact_path: str) -> str:
    """``cvnet.onnx`` -> ``cvnet.onnx.json`` (the sidecar sits next to the artefact)."""
    return os.fspath(artifact_path) + SIDECAR_SUFFIX


def sidecar_text(metadata: Union[ArtifactMetadata, Dict[str, Any]],
                 source: str = "<metadata>") -> str:
    """Validates ``metadata`` and renders the sidecar's JSON text.

    Writers write the text atomically together with the artefact (``write_files_atomic``), so a
    sidecar never appears without its file.

    Raises:
        MetadataError: ``metadata`` is invalid; the message names ``source``.
    """
    data = metadata.to_dict() if isinstance(metadata, ArtifactMetadata) else _jsonable(metadata)
    record = metadata_from_dict(data, source=source)
    return json.dumps(record.to_dict(), indent=2) + "\n"


def read_sidecar(path: str) -> ArtifactMetadata:
    """Reads and validates a sidecar.

    Args:
        path: The sidecar (``cvnet.onnx.json``); an artefact path (``cvnet.onnx``) is accepted
            and its sidecar read.

    Raises:
        MetadataError: The file is missing, not JSON, or not a valid sidecar; the message names
            the file and the problem.
    """
    path = os.fspath(path)
    if not path.endswith(SIDECAR_SUFFIX):
        path = sidecar_path(path)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise MetadataError("{}: cannot read the sidecar ({}); copy it along with the artefact "
                            "(cvnet-export writes both)".format(path, err.strerror or err))
    try:
        data = json.loads(text)
    except ValueError as err:
        raise MetadataError("{}: not valid JSON ({}); re-export to write it again".format(
            path, err))
    return metadata_from_dict(data, source=path)


def check_artifact_file(metadata: ArtifactMetadata, artifact_path: str) -> None:
    """Checks that ``artifact_path`` is the file the sidecar describes (by SHA-256).

    Raises:
        MetadataError: The sidecar has no hash, or the file's hash differs (the two files were
            not copied together).
    """
    if metadata.onnx_sha256 is None:
        raise MetadataError("the sidecar of {} records no onnx_sha256; re-export it".format(
            artifact_path))
    actual = sha256_file(artifact_path)
    if actual != metadata.onnx_sha256:
        raise MetadataError("{} does not match its sidecar (sha256 {}..., sidecar says {}...): "
                            "the files come from different exports; copy the .onnx and its "
                            ".onnx.json together".format(artifact_path, actual[:12],
                                                         metadata.onnx_sha256[:12]))


def to_metadata_props(metadata: ArtifactMetadata) -> Dict[str, str]:
    """The sidecar as ONNX ``metadata_props``: key -> JSON-encoded value, ``onnx_sha256`` left out.

    ONNX Runtime shows them as ``session.get_modelmeta().custom_metadata_map``.
    """
    return {key: json.dumps(value) for key, value in metadata.to_dict().items()
            if key != "onnx_sha256"}


def metadata_from_props(props: Dict[str, str],
                        source: str = "<metadata_props>") -> ArtifactMetadata:
    """Reads a record back from :func:`to_metadata_props` output.

    Entries other tools wrote into the same graph (onnxsim adds ``onnxsim.assigned_node_names``
    as plain text) are kept as text in ``extra``.

    Raises:
        MetadataError: A value of the record's own fields is not JSON, or the record is invalid.
    """
    data = {}
    for key, value in props.items():
        try:
            data[key] = json.loads(value)
        except ValueError:
            if key in ArtifactMetadata._fields:
                raise MetadataError("{}: value of {!r} is not JSON: {!r}".format(source, key,
                                                                                  value))
            data[key] = value
    return metadata_from_dict(data, source=source)
