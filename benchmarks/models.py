"""The models a default run benchmarks: their cache folder, and the host ability that makes them.

A default run (no ``--engine``) times untrained models it prepares once under
``<cache>/<arch>-<H>x<W>[-fp16]/``: an untrained checkpoint (``model.pt``, seed 0),
``bench.json`` (parameters, GMACs, the request it answers, the ONNX files' names) and, when a
backend needs it, the ONNX export (``model-<id>.onnx`` + sidecar) for the batch range the run
asks for, and for ONNX Runtime the graph exported for it (``model-<id>.ort.onnx``:
``cvnet-export --optimize-for onnxruntime``). A later run reuses the files when ``bench.json``
(and the sidecars, for ONNX) match the request.

A file another benchmark may be timing is never removed or replaced: a run that needs a wider
batch range exports under new names (:func:`new_onnx_name`) and ``bench.json``, replaced
atomically, points to them; the earlier exports stay (delete the cache folder to reclaim them
once no benchmark runs).

This module is device-side (Python 3.6, no torch): it owns the cache's format (:func:`cached`,
:func:`write_bench_info`) and hands the making to the host install's ``prepare_model``
(:mod:`cvnet.export.bench_models`, registered as the entry point ``prepare_model`` of the group
``cvnet.bench``). On a device there is none, and a default run says to pass ``--engine``.
"""

import json
import logging
import os
import uuid
from typing import Any, Dict, NamedTuple, Optional, Tuple

from cvnet.core.artifact import read_sidecar, sidecar_path
from cvnet.core.errors import CVNetError
from cvnet.core.fileio import folder_lock, make_folders, write_text_atomic
from cvnet.core.plugins import BENCH, INSTALL_HINT, PluginError, load_plugin
from cvnet.engines.errors import MissingDependencyError

logger = logging.getLogger(__name__)

#: Where default runs keep their exports unless --cache-dir or $CVNET_CACHE says otherwise.
DEFAULT_CACHE = os.path.join("~", ".cache", "cvnet", "bench")
CACHE_VERSION = 2  # 2: bench.json records the parameters; the ONNX export is optional
#: The file names of a prepared model in its cache folder.
CHECKPOINT_FILE, ONNX_FILE, INFO_FILE = "model.pt", "model.onnx", "bench.json"
#: ``bench.json``'s keys naming the current ONNX exports (:data:`ONNX_FILE` and
#: :data:`ORT_ONNX_FILE` when absent): the graph as exported, and the graph exported for ONNX
#: Runtime (channel reductions rewritten).
ONNX_KEY, ORT_ONNX_KEY = "onnx_file", "ort_onnx_file"
ORT_ONNX_FILE = "model.ort.onnx"
#: What a default run needs the host for, named in the refusal on a device.
_NEEDS_HOST = ("a benchmark without --engine (it exports the model first; on a device, pass "
               "--engine cvnet.onnx or cvnet.plan)")


class PreparedModel(NamedTuple):
    """A model ready for every backend.

    Attributes:
        arch: Registered model name.
        checkpoint: The ``.pt`` file (PyTorch backend).
        onnx: The ``.onnx`` file with its sidecar (OpenVINO, and ONNX Runtime without
            ``ort_onnx``; TensorRT builds from it); None when none was asked for.
        params: Parameters without ID classifiers, as the sidecar records them.
        gmacs: Multiply-accumulates of one image, billions.
        input_size: (height, width).
        ort_onnx: The graph exported for ONNX Runtime (``--optimize-for onnxruntime``), with
            its sidecar; None when none was asked for.
    """

    arch: str
    checkpoint: str
    onnx: Optional[str]
    params: int
    gmacs: float
    input_size: Tuple[int, int]
    ort_onnx: Optional[str] = None


def cache_dir(path: Optional[str] = None) -> str:
    """The cache folder: ``path``, else ``$CVNET_CACHE/bench``, else ``~/.cache/cvnet/bench``."""
    if path:
        return os.path.abspath(os.path.expanduser(path))
    env = os.environ.get("CVNET_CACHE")
    if env:
        return os.path.join(os.path.abspath(os.path.expanduser(env)), "bench")
    return os.path.expanduser(DEFAULT_CACHE)


def model_folder(arch: str, input_size: Tuple[int, int], half: bool,
                 cache: Optional[str] = None) -> str:
    """The cache folder of one request: ``<cache>/<arch>-<H>x<W>[-fp16]``."""
    return os.path.join(cache_dir(cache), "{}-{}x{}{}".format(
        arch, int(input_size[0]), int(input_size[1]), "-fp16" if half else ""))


def bench_request(arch: str, input_size: Tuple[int, int], batch_max: int, half: bool
                  ) -> Dict[str, Any]:
    """What a run needs of a prepared model, as ``bench.json`` records it."""
    return {"version": CACHE_VERSION, "arch": arch,
            "input_size": [int(input_size[0]), int(input_size[1])],
            "batch_max": int(batch_max), "half": bool(half)}


def cached(folder: str, request: Dict[str, Any], onnx: bool,
           ort_graph: bool = False) -> Optional[PreparedModel]:
    """The cached model when its files exist and answer ``request``; None otherwise.

    Args:
        folder: The model's cache folder.
        request: What the run needs (:func:`bench_request`).
        onnx: The run needs the ONNX export too, for at least ``request["batch_max"]``.
        ort_graph: The run needs the graph exported for ONNX Runtime too.
    """
    info_path = os.path.join(folder, INFO_FILE)
    checkpoint = os.path.join(folder, CHECKPOINT_FILE)
    if not all(os.path.isfile(p) for p in (info_path, checkpoint)):
        return None
    try:
        with open(info_path) as handle:
            info = json.load(handle)
        if not isinstance(info, dict):
            raise ValueError("{} is not a JSON object".format(info_path))
        names = [(ONNX_KEY, ONNX_FILE)] if onnx else []
        names += [(ORT_ONNX_KEY, ORT_ONNX_FILE)] if onnx and ort_graph else []
        graphs = [os.path.join(folder, os.path.basename(str(info.get(key, default))))
                  for key, default in names]
        if not all(os.path.isfile(p) for g in graphs for p in (g, sidecar_path(g))):
            return None
        metas = [read_sidecar(sidecar_path(p)) for p in graphs]
    except (OSError, ValueError, CVNetError) as err:
        logger.info("cache at %s unusable (%s); preparing again", folder, err)
        return None
    height, width = request["input_size"]
    matches = all(info.get(key) == request[key] for key in ("version", "arch", "input_size"))
    for meta in metas:
        matches = (matches and meta.variant == request["arch"]
                   and (meta.input_height, meta.input_width) == (height, width)
                   and meta.batch_max >= request["batch_max"]
                   and (meta.graph_precision == "fp16") == request["half"])
    if not matches:
        return None
    return PreparedModel(arch=request["arch"], checkpoint=checkpoint,
                         onnx=graphs[0] if onnx else None, params=int(info["params"]),
                         gmacs=float(info["gmacs"]), input_size=(height, width),
                         ort_onnx=graphs[1] if onnx and ort_graph else None)


def new_onnx_name(suffix: str = ".onnx") -> str:
    """A name no export in the folder has had (``model-<12 hex digits><suffix>``): a new export
    never replaces a file another benchmark may be timing."""
    return "model-{}{}".format(uuid.uuid4().hex[:12], suffix)


def write_bench_info(folder: str, request: Dict[str, Any], *, params: int,
                     gmacs: float, onnx_file: Optional[str] = None,
                     ort_onnx_file: Optional[str] = None) -> str:
    """Writes ``bench.json`` atomically: the request a prepared model answers, its parameters
    and GMACs, and the names of its ONNX exports (None: none)."""
    info = dict(request, gmacs=gmacs, params=params)
    for key, name in ((ONNX_KEY, onnx_file), (ORT_ONNX_KEY, ort_onnx_file)):
        if name is not None:
            info[key] = os.path.basename(name)
    return write_text_atomic(os.path.join(folder, INFO_FILE), json.dumps(info, indent=2) + "\n")


def prepare_model(arch: str, *, input_size: Tuple[int, int] = (256, 256), batch_max: int = 32,
                  half: bool = False, onnx: bool = True, ort_graph: bool = False,
                  cache: Optional[str] = None) -> PreparedModel:
    """An untrained ``arch`` as a checkpoint (and an ONNX file), from the cache or made now.

    Args:
        arch: Registered model name (``cvnet``, a baseline such as ``bot``, ``cvnet_tiny``).
        input_size: (height, width) in pixels.
        batch_max: Largest batch the ONNX file must accept: its dynamic batch range is
            1..batch_max.
        half: Export an FP16 graph.
        onnx: Export to ONNX at all (ONNX Runtime or TensorRT will run it); False for a
            PyTorch-only run.
        ort_graph: With ``onnx``, also export the graph for ONNX Runtime (``model-<id>.ort.onnx``,
            ``--optimize-for onnxruntime``; FP32 graphs only).
        cache: Cache folder (see :func:`cache_dir`).

    Raises:
        MissingDependencyError: No host install here (on a device: pass ``--engine``).
        ConfigError, ExportError: The model cannot be built or exported.
    """
    try:
        prepare = load_plugin(BENCH, "prepare_model")
    except PluginError as err:
        if err.stale:
            raise MissingDependencyError("{}: {}".format(_NEEDS_HOST, err))
        raise MissingDependencyError("{} needs torch, which cannot be imported here ({}). "
                                     "PyTorch is for the host: use cvnet's host install "
                                     "({}).".format(_NEEDS_HOST, err, INSTALL_HINT))
    if prepare is None:
        raise MissingDependencyError("{} needs cvnet's host install (PyTorch and the exporter), "
                                     "which is not here: no cvnet.bench plugin is "
                                     "registered; install it with {}".format(_NEEDS_HOST,
                                                                            INSTALL_HINT))
    options = {"ort_graph": True} if ort_graph else {}  # a plugin of an older host needs none
    folder = make_folders(model_folder(arch, input_size, half, cache))
    with folder_lock(folder, what="cvnet-bench preparing this model", wait=True):
        # One preparer at a time (two would export and record at once). The lock ends with the
        # preparation, not the timing: what a running benchmark times is never replaced, a new
        # export gets a new name (new_onnx_name).
        return prepare(arch, input_size=input_size, batch_max=batch_max, half=half, onnx=onnx,
                       cache=cache, **options)
