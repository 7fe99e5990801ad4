"""The models a default run benchmarks, prepared once in a cache folder (host side).

For a registered model name this writes, under ``<cache>/<arch>-<H>x<W>[-fp16]/``, an untrained
checkpoint (``model.pt``, seed 0), its ONNX export (``model.onnx`` + sidecar, through
:func:`export.pipeline.export_model`) and ``bench.json`` (GMACs, the request it answers). A
later run reuses them when ``bench.json`` and the sidecar match the request. torch, cvnet's model
code and the exporter are imported inside :func:`prepare_model` only: this module imports on the
device, where a default run (no ``--engine``) is not possible and says so.
"""

import json
import logging
import os
from typing import Any, Dict, NamedTuple, Optional, Tuple

from cvnet.artifact import read_sidecar, sidecar_path
from cvnet.errors import CVNetError
from cvnet.fileio import write_text_atomic

logger = logging.getLogger(__name__)

#: Where default runs keep their exports unless --cache-dir or $CVNET_CACHE says otherwise.
DEFAULT_CACHE = os.path.join("~", ".cache", "cvnet", "bench")
CACHE_VERSION = 1


class PreparedModel(NamedTuple):
    """A model ready for every backend.

    Attributes:
        arch: Registered model name.
        checkpoint: The ``.pt`` file (PyTorch backend).
        onnx: The ``.onnx`` file with its sidecar (ONNX Runtime; TensorRT builds from it).
        params: Parameters without ID classifiers, as the sidecar records them.
        gmacs: Multiply-accumulates of one image, billions.
        input_size: (height, width).
    """

    arch: str
    checkpoint: str
    onnx: str
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


def _cached(folder: str, request: Dict[str, Any]) -> Optional[PreparedModel]:
    """The cached model when its files exist and answer ``request``; None otherwise."""
    onnx_path = os.path.join(folder, "model.onnx")
    info_path = os.path.join(folder, "bench.json")
    checkpoint = os.path.join(folder, "model.pt")
    if not all(os.path.isfile(p) for p in (onnx_path, sidecar_path(onnx_path), info_path,
                                           checkpoint)):
        return None
    try:
        with open(info_path) as handle:
            info = json.load(handle)
        meta = read_sidecar(sidecar_path(onnx_path))
    except (OSError, ValueError, CVNetError) as err:
        logger.info("cache at %s unusable (%s); exporting again", folder, err)
        return None
    height, width = request["input_size"]
    matches = (info.get("version") == CACHE_VERSION and meta.variant == request["arch"]
               and (meta.input_height, meta.input_width) == (height, width)
               and meta.batch_max >= request["batch_max"]
               and (meta.graph_precision == "fp16") == request["half"])
    if not matches:
        return None
    return PreparedModel(arch=request["arch"], checkpoint=checkpoint, onnx=onnx_path,
                         params=int(meta.param_count), gmacs=float(info["gmacs"]),
                         input_size=(height, width))


def prepare_model(arch: str, *, input_size: Tuple[int, int] = (256, 256), batch_max: int = 32,
                  half: bool = False, cache: Optional[str] = None) -> PreparedModel:
    """An untrained ``arch`` as a checkpoint and an ONNX file, from the cache or made now.

    Args:
        arch: Registered model name (``cvnet``, a baseline such as ``bot``, ``cvnet_tiny``).
        input_size: (height, width) in pixels.
        batch_max: Largest batch the ONNX file must accept.
        half: Export an FP16 graph.
        cache: Cache folder (see :func:`cache_dir`).

    Raises:
        MissingDependencyError: torch is not installed (on a device: pass ``--engine``).
        ConfigError, ExportError: The model cannot be built or exported.
    """
    from engines.deps import require

    require("torch", "a benchmark without --engine (it exports the model first; on a device, "
                     "pass --engine cvnet.onnx or cvnet.plan)")
    import torch

    from cvnet.models import build_model
    from cvnet.models.checkpoint import save_checkpoint
    from cvnet.models.summary import count_macs
    from export.pipeline import ExportOptions, export_model

    height, width = int(input_size[0]), int(input_size[1])
    request = _request(arch, (height, width), int(batch_max), bool(half))
    folder = os.path.join(cache_dir(cache), "{}-{}x{}{}".format(arch, height, width,
                                                                "-fp16" if half else ""))
    cached = _cached(folder, request)
    if cached is not None:
        logger.info("%s: using the cached export in %s", arch, folder)
        return cached
    os.makedirs(folder, exist_ok=True)
    logger.info("%s: building an untrained model and exporting it to %s (not verified: timing "
                "does not depend on the weights)", arch, folder)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    checkpoint = save_checkpoint(os.path.join(folder, "model.pt"), model, arch=arch)
    gmacs = count_macs(model, (3, height, width)).get("", 0) / 1e9
    del model
    result = export_model(checkpoint, ExportOptions(
        output=os.path.join(folder, "model.onnx"), arch=arch, input_size=(height, width),
        dynamic_batch=(1, max(int(batch_max), 1)), half=half, verify=False))
    info = dict(request, gmacs=round(gmacs, 4))
    write_text_atomic(os.path.join(folder, "bench.json"), json.dumps(info, indent=2) + "\n")
    return PreparedModel(arch=arch, checkpoint=checkpoint, onnx=result.onnx_path,
                         params=int(result.metadata.param_count), gmacs=round(gmacs, 4),
                         input_size=(height, width))
