"""OpenVINO runner for ``.onnx`` files on x86 CPUs (Python 3.6; openvino imported lazily).

``open_engine("cvnet.onnx", backend="openvino", precision="auto")`` reads the exported ONNX file
with OpenVINO's ONNX front end and compiles it for the CPU. ONNX Runtime stays the default for
``.onnx`` files; OpenVINO is the optional extra ``pip install cvnet[openvino]`` (docs/cpu.md says
which Pythons and platforms its wheels cover: x86-64 Linux, Windows and macOS; none for the
Jetson Nano).

Precision (OpenVINO's ``INFERENCE_PRECISION_HINT``):

- ``fp32``: FP32 arithmetic, embeddings as close to PyTorch's as ONNX Runtime's.
- ``bf16``: BF16 arithmetic where the CPU has it (AVX512-BF16, AMX): about twice as fast on
  such CPUs, and used only where the export's agreement check passed for it (below).
- ``auto``: what OpenVINO picks on this CPU (bf16 on AVX512-BF16 hardware; on ARM builds f16;
  fp32 elsewhere), with the same condition for any precision other than fp32; where the check
  failed or was not run, fp32 with a warning.

The agreement check (cosine and top-5 retrieval agreement against PyTorch FP32 on the
verification images, :mod:`cvnet.core.parity`) runs once, at export
(``cvnet-export --verify-backend openvino``), and its verdict travels in the sidecar
(``verification.runtime_checks``). A runner whose compiled model computes anything but fp32
reads the record of that precision and judges its figures again with today's thresholds: it
refuses the precision (explicit) or falls back to fp32 (``auto``) where the check failed, is
missing or holds no figures, and warns where it was made with another OpenVINO major version
(``check_agreement=False`` skips this, for a benchmark that measures agreement itself).
"""

import importlib
import logging
from typing import Any, Optional

import numpy as np

from cvnet.core.artifact import check_artifact_file
from cvnet.core.parity import find_runtime_check, record_summary, record_verdict
from cvnet.engines.base import Runner
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineError, EngineLoadError
from cvnet.engines.spec import ModelIO

logger = logging.getLogger(__name__)

#: The precisions the runner offers.
PRECISIONS = ("fp32", "bf16", "auto")
#: Our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
HINTS = {"fp32": "f32", "bf16": "bf16"}
#: How to enable bf16 for a model whose sidecar has no verdict for it.
VERIFY_FIX = ("export it with the agreement check for OpenVINO (cvnet-export CHECKPOINT "
              "--verify-backend openvino), which records the verdict in the sidecar")
#: OpenVINO element types -> numpy dtype names.
_OV_TYPES = {"f32": "float32", "float32": "float32", "u8": "uint8", "uint8": "uint8",
             "f16": "float16", "float16": "float16"}


class PrecisionRefusedError(EngineLoadError):
    """A precision the model's agreement check failed (or never ran, or proves nothing) for."""


def openvino_core(purpose: str = "the OpenVINO backend") -> Any:
    """An ``openvino.Core``, from ``openvino`` (2023.1+) or ``openvino.runtime`` (2022.x).

    Args:
        purpose: What needs it, for the message when it is missing.

    Raises:
        MissingDependencyError: openvino is not installed; the message says how to install it.
    """
    ov = require("openvino", purpose)
    core = getattr(ov, "Core", None)
    if core is None:  # OpenVINO 2022.x (the last wheels for Python 3.6) keep it in .runtime
        core = importlib.import_module("openvino.runtime").Core
    return core()


def openvino_version() -> str:
    """The installed OpenVINO's version, e.g. ``"2026.4.1"`` (build suffix dropped)."""
    ov = importlib.import_module("openvino")
    version = getattr(ov, "__version__", None) or importlib.import_module(
        "openvino.runtime").get_version()
    return str(version).split("-")[0]


def precision_name(hint: Any) -> str:
    """OpenVINO's precision value (a ``Type`` or a string) -> ``"fp32"``, ``"bf16"``, ``"fp16"``."""
    text = str(getattr(hint, "get_type_name", lambda: hint)()).lower()
    if "bf16" in text or "bfloat16" in text:
        return "bf16"
    if text in ("f16", "fp16", "float16") or "float16" in text:
        return "fp16"
    return "fp32"


def cpu_supports_bf16(core: Any) -> bool:
    """Whether OpenVINO computes BF16 on this CPU (``OPTIMIZATION_CAPABILITIES`` has BF16)."""
    try:
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an old OpenVINO without the property
        return False
    return "BF16" in [str(c).upper() for c in capabilities]


def compile_config(precision: str, threads: Optional[int]) -> dict:
    """The ``compile_model`` properties for a precision and a thread count.

    ``auto`` sets no precision hint (OpenVINO decides); ``threads`` None leaves OpenVINO's own
    thread count (all physical cores).
    """
    if precision not in PRECISIONS:
        raise EngineError("precision must be one of {}, got {!r}".format(
            ", ".join(PRECISIONS), precision))
    config = {}
    if precision in HINTS:
        config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OpenVinoRunner(Runner):
    """Runs an ONNX graph with OpenVINO on the CPU.

    Args:
        path: The ``.onnx`` file.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (module docstring).
        threads: ``INFERENCE_NUM_THREADS``; OpenVINO's default (physical cores) when None.
        check_agreement: Use a precision other than fp32 (bf16, f16) only where the sidecar
            records a passing agreement check of it (the default); False runs whatever OpenVINO
            picks.
        check_hash: Check the file against the sidecar's ``onnx_sha256`` before loading (the
            sidecar's verdicts are about that file).
        **kwargs: See :class:`cvnet.engines.base.Runner` (``metadata``, ``normalize``,
            ``batch_range``).

    Attributes:
        precision: The precision the compiled model computes in (``"fp32"``, ``"bf16"`` or
            ``"fp16"``), set on activation.
        requested_precision: What was asked for.
    """

    backend = "openvino"
    kind = "an ONNX model (OpenVINO)"

    def __init__(self, path: str, *, precision: str = "auto", threads: Optional[int] = None,
                 check_agreement: bool = True, check_hash: bool = True, **kwargs: Any):
        super(OpenVinoRunner, self).__init__(path, **kwargs)
        compile_config(precision, threads)  # refuses a bad precision before anything loads
        if threads is not None and int(threads) < 1:
            raise EngineError("threads must be >= 1, got {}".format(threads))
        self.requested_precision = precision
        self.precision = None  # type: Optional[str]
        self._threads = threads
        self._check_agreement = check_agreement
        self._check_hash = check_hash
        self._compiled = None
        self._request = None
        self._output = None

    def _activate(self) -> ModelIO:
        core = self._core()
        if self._check_hash and self.metadata is not None and self.metadata.onnx_sha256:
            check_artifact_file(self.metadata, self.path)
        try:
            model = core.read_model(self.path)
        except Exception as err:
            raise EngineLoadError("{}: OpenVINO cannot read it ({}); is it a complete .onnx "
                                  "file? Copy it again or re-export it with cvnet-export".format(
                                      self.path, str(err).strip().splitlines()[0][:300]))
        compiled = self._compile(core, model, self.requested_precision)
        precision = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision != "fp32" and self._check_agreement:
            refusal = self._refusal(precision)
            if refusal is not None and self.requested_precision != "auto":
                raise PrecisionRefusedError(refusal + "; use --precision fp32")
            if refusal is not None:
                logger.warning("%s; OpenVINO would pick %s on this CPU, running fp32 instead",
                               refusal, precision)
                compiled = self._compile(core, model, "fp32")
                precision = "fp32"
        if self.requested_precision == "bf16" and precision != "bf16":
            logger.warning("%s: this CPU computes no BF16 (OpenVINO runs %s); the figures are "
                           "%s's", self.path, precision, precision.upper())
        self.precision = precision
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._output = compiled.output(0)  # looked up once, not on every batch
        logger.debug("%s: OpenVINO %s on the CPU, %s threads", self.path, precision,
                     self._threads or "default")
        return self._model_io(model)

    def _core(self) -> Any:
        return openvino_core("{}: {}".format(self.path, self.kind))

    def _compile(self, core: Any, model: Any, precision: str) -> Any:
        try:
            return core.compile_model(model, "CPU", compile_config(precision, self._threads))
        except Exception as err:
            raise EngineLoadError("{}: OpenVINO cannot compile it for the CPU at {} ({})".format(
                self.path, precision, str(err).strip().splitlines()[0][:300]))

    def _refusal(self, precision: str) -> Optional[str]:
        """Why ``precision`` (any but fp32) may not be used for this model, or None where the
        sidecar records a check of it whose figures pass today's thresholds
        (:func:`cvnet.core.parity.record_verdict`; the stored ``passed`` is not trusted)."""
        verification = self.metadata.verification if self.metadata is not None else None
        record = find_runtime_check(verification, self.backend, precision)
        if record is None:
            return ("{}: {} is not verified for this model (its sidecar records no agreement "
                    "check for OpenVINO {}); {}".format(self.path, precision, precision,
                                                        VERIFY_FIX))
        verdict = record_verdict(record)
        if verdict is None:
            return ("{}: the sidecar's agreement check for OpenVINO {} holds no figures, so it "
                    "proves nothing; {}".format(self.path, precision, VERIFY_FIX))
        if not verdict:
            return ("{}: OpenVINO {} failed the agreement check at export ({}), so it would "
                    "change the rankings".format(self.path, precision, record_summary(record)))
        self._warn_other_version(record, precision)
        return None

    def _warn_other_version(self, record: dict, precision: str) -> None:
        """Warns where the verdict was reached with another OpenVINO major version."""
        made = str(record.get("backend_version") or "?")
        try:
            here = openvino_version()
        except ImportError:  # a stand-in core (tests): no version to compare
            return
        if made.split(".")[0] != here.split(".")[0]:
            logger.warning("%s: the %s agreement check was made with OpenVINO %s on %s; this is "
                           "OpenVINO %s, whose %s kernels may differ: re-export with "
                           "--verify-backend openvino to check it here", self.path, precision,
                           made, record.get("device") or "another machine", here, precision)

    def _model_io(self, model: Any) -> ModelIO:
        inputs, outputs = model.inputs, model.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineLoadError("{}: expected one input and one output, found {} and {}; is "
                                  "this a cvnet export?".format(self.path, len(inputs),
                                                                len(outputs)))
        shape = tuple(None if dim.is_dynamic else dim.get_length()
                      for dim in inputs[0].get_partial_shape())
        out_shape = tuple(None if dim.is_dynamic else dim.get_length()
                          for dim in outputs[0].get_partial_shape())
        dtype = str(inputs[0].get_element_type().get_type_name())
        batch = shape[0] if shape else None
        return ModelIO(input_name=inputs[0].get_any_name(), input_shape=shape,
                       input_dtype=_OV_TYPES.get(dtype, dtype),
                       output_name=outputs[0].get_any_name(), output_shape=out_shape,
                       batch_range=(batch, batch) if batch else None)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(batch)})
        return np.array(result[self._output], copy=True)

    def _deactivate(self) -> None:
        self._request = None
        self._compiled = None
        self._output = None
