"""The models a default run benchmarks, prepared once in a cache folder (host side).

For a registered model name this writes, under ``<cache>/<arch>-<H>x<W>[-fp16]/``, an untrained
checkpoint (``model.pt``, seed 0), ``bench.json`` (parameters, GMACs, the request it answers)
and, when a backend needs it, the ONNX export (``model.onnx`` + sidecar, through
:func:`cvnet.export.pipeline.export_model`) for the batch range the run asks for. A PyTorch-only run
exports nothing. A later run reuses the files when ``bench.json`` (and the sidecar, for ONNX)
match the request. torch, cvnet's model code and the exporter are imported inside
:func:`prepare_model` only: this module imports on the device, where a default run (no
``--engine``) is not possible and says so.
"""

import json
import logging
import os
from typing import Any, Dict, NamedTuple, Optional, Tuple

from cvnet.core.artifact import read_sidecar, sidecar_path
from cvnet.core.errors import CVNetError
from cvnet.core.fileio import write_text_atomic

logger = logging.getLogger(__name__)

#: Where default runs keep their exports unless --cache-dir or $CVNET_CACHE says otherwise.
DEFAULT_CACHE = os.path.join("~", ".cache", "cvnet", "bench")
CACHE_VERSION = 2  # 2: bench.json records the parameters; the ONNX export is optional


class PreparedModel(NamedTuple):
    """A model ready for every backend.

    Attributes:
        arch: Registered model name.
        checkpoint: The ``.pt`` file (PyTorch backend).
        onnx: The ``.onnx`` file with its sidecar (ONNX Runtime; TensorRT builds from it); None
            when none was asked for.
        params: Parameters without ID classifiers, as the sidecar records them.
        gmacs: Multiply-accumulates of one image, billions.
        input_size: (height, width).
    """

    arch: str
    checkpoint: str
    onnx: Optional[str]
    params: int
    gmacs: float
    input_size: Tuple[int, int]


def cache_dir(path: Optional[str] = None) -> str:
    """The cache folder: ``path``, else ``$CVNET_CACHE/bench``, else ``~/.cache/cvnet/bench``."""
    if path:
        return os.path.abspath(os.path.expanduser(path))
    env = os.environ.get("CVNET_CACHE")
    if env:
        return os.path.join(os.path.abspath(os.path.expanduser(env)), "bench")
    return os.path.expanduser(DEFAULT_CACHE)


def _request(arch: str, input_size: Tuple[int, int], batch_max: int, half: bool
             ) -> Dict[str, Any]:
    return {"version": CACHE_VERSION, "arch": arch, "input_size": list(input_size),
            "batch_max": batch_max, "half": half}


def _cached(folder: str, request: Dict[str, Any], onnx: bool) -> Optional[PreparedModel]:
    """The cached model when its files exist and answer ``request``; None otherwise.

    Args:
        folder: The model's cache folder.
        request: What the run needs (:func:`_request`).
        onnx: The run needs the ONNX export too, for at least ``request["batch_max"]``.
    """
    onnx_path = os.path.join(folder, "model.onnx")
    info_path = os.path.join(folder, "bench.json")
    checkpoint = os.path.join(folder, "model.pt")
    needed = [info_path, checkpoint] + ([onnx_path, sidecar_path(onnx_path)] if onnx else [])
    if not all(os.path.isfile(p) for p in needed):
        return None
    try:
        with open(info_path) as handle:
            info = json.load(handle)
        meta = read_sidecar(sidecar_path(onnx_path)) if onnx else None
    except (OSError, ValueError, CVNetError) as err:
        logger.info("cache at %s unusable (%s); preparing again", folder, err)
        return None
    height, width = request["input_size"]
    matches = all(info.get(key) == request[key] for key in ("version", "arch", "input_size"))
    if meta is not None:
        matches = (matches and meta.variant == request["arch"]
                   and (meta.input_height, meta.input_width) == (height, width)
                   and meta.batch_max >= request["batch_max"]
                   and (meta.graph_precision == "fp16") == request["half"])
    if not matches:
        return None
    return PreparedModel(arch=request["arch"], checkpoint=checkpoint,
                         onnx=onnx_path if onnx else None, params=int(info["params"]),
                         gmacs=float(info["gmacs"]), input_size=(height, width))


def prepare_model(arch: str, *, input_size: Tuple[int, int] = (256, 256), batch_max: int = 32,
                  half: bool = False, onnx: bool = True,
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
        cache: Cache folder (see :func:`cache_dir`).

    Raises:
        MissingDependencyError: torch is not installed (on a device: pass ``--engine``).
        ConfigError, ExportError: The model cannot be built or exported.
    """
    from cvnet.engines.deps import require

    require("torch", "a benchmark without --engine (it exports the model first; on a device, "
                     "pass --engine cvnet.onnx or cvnet.plan)")
    import torch

    from cvnet.models import build_model
    from cvnet.models.checkpoint import save_checkpoint
    from cvnet.models.summary import count_macs, param_count

    height, width = int(input_size[0]), int(input_size[1])
    request = _request(arch, (height, width), int(batch_max), bool(half))
    folder = os.path.join(cache_dir(cache), "{}-{}x{}{}".format(arch, height, width,
                                                                "-fp16" if half else ""))
    cached = _cached(folder, request, onnx)
    if cached is not None:
        logger.info("%s: using the cached model in %s", arch, folder)
        return cached
    os.makedirs(folder, exist_ok=True)
    onnx_path = os.path.join(folder, "model.onnx")
    for stale in (onnx_path, sidecar_path(onnx_path)):  # from an older cache layout or model
        if os.path.exists(stale):
            os.remove(stale)
    logger.info("%s: building an untrained model in %s", arch, folder)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    checkpoint = save_checkpoint(os.path.join(folder, "model.pt"), model, arch=arch)
    gmacs = round(count_macs(model, (3, height, width)).get("", 0) / 1e9, 4)
    params = param_count(model)
    del model
    if onnx:
        from cvnet.export.pipeline import ExportOptions, export_model

        logger.info("%s: exporting to ONNX for batches 1..%d (not verified: timing does not "
                    "depend on the weights)", arch, batch_max)
        onnx_path = export_model(checkpoint, ExportOptions(
            output=onnx_path, arch=arch, input_size=(height, width),
            dynamic_batch=(1, max(int(batch_max), 1)), half=half, verify=False)).onnx_path
    info = dict(request, gmacs=gmacs, params=params)
    write_text_atomic(os.path.join(folder, "bench.json"), json.dumps(info, indent=2) + "\n")
    return PreparedModel(arch=arch, checkpoint=checkpoint, onnx=onnx_path if onnx else None,
                         params=params, gmacs=gmacs, input_size=(height, width))
