"""ONNX Runtime runner for ``.onnx`` files (Python 3.6; onnxruntime imported lazily).

Execution providers are chosen from what the installed onnxruntime offers, fastest first:
TensorRT, CUDA, CPU (``onnxruntime`` has only the CPU one; the Jetson Zoo's ``onnxruntime-gpu``
adds CUDA and TensorRT). Pass ``providers=[...]`` to choose.

Without a sidecar the runner reads the cvnet metadata the exporter stores in the file's
``metadata_props``; without either it falls back to the graph's input shape, with a warning.
"""

import logging
from typing import Any, List, Optional, Sequence

import numpy as np

from cvnet.core.artifact import FORMAT, ArtifactMetadata, check_artifact_file, metadata_from_props
from cvnet.engines.base import Runner
from cvnet.engines.errors import EngineError, EngineLoadError
from cvnet.engines.spec import ModelIO

logger = logging.getLogger(__name__)

#: Providers in order of preference.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                       "CPUExecutionProvider")
#: The session option that lets ONNX Runtime's intra-op threads spin while they wait.
SPIN_WAIT_KEY = "session.intra_op.allow_spinning"
#: ONNX tensor element types -> numpy dtype names.
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
               "tensor(uint8)": "uint8", "tensor(double)": "float64"}


def default_providers(available: Sequence[str]) -> List[str]:
    """The installed providers worth using, fastest first (always ending with the CPU)."""
    chosen = [name for name in PREFERRED_PROVIDERS if name in available]
    return chosen or ["CPUExecutionProvider"]


def session_options(ort: Any, threads: Optional[int] = None, *,
                    spin_wait: bool = False) -> Any:
    """cvnet's ONNX Runtime session options: ``threads`` intra-op threads (ONNX Runtime's
    default, all cores, when None) that wait without spinning unless ``spin_wait``
    (:class:`OrtRunner`; docs/threads.md), errors-only logging.

    Args:
        ort: The imported ``onnxruntime`` module.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; ONNX Runtime warns about unused initializers
    if threads:
        options.intra_op_num_threads = int(threads)
    options.add_session_config_entry(SPIN_WAIT_KEY, "1" if spin_wait else "0")
    return options


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def load_error(path: str, err: Exception) -> EngineLoadError:
    """The error for an ``.onnx`` file ONNX Runtime cannot load: the file, ONNX Runtime's
    reason, and what to do."""
    return EngineLoadError("{}: ONNX Runtime cannot load it ({}); is it a complete .onnx "
                           "file? Copy it again or re-export it with cvnet-export".format(
                               path, _first_line(err)))


class OrtRunner(Runner):
    """Runs an ONNX graph with ONNX Runtime.

    Args:
        path: The ``.onnx`` file.
        providers: Execution providers, in order; by default :func:`default_providers`.
        threads: Intra-op threads; ONNX Runtime's default (all cores) when None.
        spin_wait: Let ONNX Runtime's intra-op threads spin while they wait for work (its own
            default). Off by default: measured on this project's 2-core VM with two threads,
            spinning made batch 1 erratic on a quiet machine (14-24 against a steady 22 images/s
            without) and cost 36% at batch 1 and 16% at batch 8 with one other busy process;
            it gained 2% at batch 8 on a quiet machine (docs/threads.md). One thread never spins.
        check_hash: Check the file against the sidecar's ``onnx_sha256`` before loading.
        **kwargs: See :class:`cvnet.engines.base.Runner` (``metadata``, ``normalize``,
            ``batch_range``).
    """

    backend = "onnxruntime"
    kind = "an ONNX model"

    def __init__(self, path: str, *, providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None, spin_wait: bool = False,
                 check_hash: bool = True, **kwargs: Any):
        super(OrtRunner, self).__init__(path, **kwargs)
        self._spin_wait = spin_wait
        self._providers = list(providers) if providers is not None else None
        self._threads = threads
        self._check_hash = check_hash
        self._session = None
        self._input_name = ""
        self.providers = []  # type: List[str]

    def _activate(self) -> ModelIO:
        ort = self._require("onnxruntime")
        if self._check_hash and self.metadata is not None and self.metadata.onnx_sha256:
            check_artifact_file(self.metadata, self.path)
        available = ort.get_available_providers()
        if self._providers is not None:
            unknown = [name for name in self._providers if name not in available]
            if unknown:
                raise EngineError("providers {} are not in this onnxruntime {} (it has {})".format(
                    unknown, ort.__version__, ", ".join(available)))
            providers = self._providers
        else:
            providers = default_providers(available)
        options = session_options(ort, self._threads, spin_wait=self._spin_wait)
        try:
            session = ort.InferenceSession(self.path, sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime's pybind errors share no useful base class
            if self._providers is None and providers != ["CPUExecutionProvider"]:
                logger.warning("ONNX Runtime could not start %s (%s); using the CPU provider",
                               ", ".join(providers[:-1]), _first_line(err))
                try:
                    session = ort.InferenceSession(self.path, sess_options=options,
                                                   providers=["CPUExecutionProvider"])
                except Exception as cpu_err:
                    raise self._load_error(cpu_err) from cpu_err
            else:
                raise self._load_error(err) from err
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineLoadError("{} has {} inputs and {} outputs; a cvnet model has one of each "
                                  "(images -> embeddings)".format(self.path, len(inputs),
                                                                  len(outputs)))
        self._session = session
        self._input_name = inputs[0].name
        self.providers = list(session.get_providers())
        shape = tuple(inputs[0].shape)
        batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return ModelIO(input_name=inputs[0].name, input_shape=shape,
                       input_dtype=_ONNX_TYPES.get(inputs[0].type, inputs[0].type),
                       output_name=outputs[0].name, output_shape=tuple(outputs[0].shape),
                       batch_range=(batch, batch) if batch else None)

    def _load_error(self, err: Exception) -> EngineLoadError:
        return load_error(self.path, err)

    def _embedded_metadata(self) -> Optional[ArtifactMetadata]:
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        if props.get("format") != '"{}"'.format(FORMAT):
            return None
        logger.info("%s: no sidecar; using the cvnet metadata stored in the file", self.path)
        return metadata_from_props(props, source="{} (metadata_props)".format(self.path))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input_name: batch})[0]

    def _deactivate(self) -> None:
        self._session = None
