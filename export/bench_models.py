"""cvnet-bench's host ability: an untrained model as a checkpoint and an ONNX export (torch).

The device-safe benchmark (:mod:`cvnet.benchmarks`) never imports this module: the host install
registers :func:`prepare_model` as the entry point ``prepare_model`` of the group ``cvnet.bench``
(pyproject.toml), and :func:`cvnet.benchmarks.models.prepare_model` finds it there. The cache's
format (folder, ``bench.json``, what a cached model must answer) is the benchmark's, in
:mod:`cvnet.benchmarks.models`; this module only makes the files.
"""

import logging
import os
from typing import Optional, Tuple

import torch

from cvnet.benchmarks.models import (CHECKPOINT_FILE, PreparedModel, bench_request, cached,
                                     model_folder, new_onnx_name, write_bench_info)
from cvnet.core.fileio import make_folders
from cvnet.export import pipeline
from cvnet.models import build_model
from cvnet.models.checkpoint import save_checkpoint
from cvnet.models.summary import count_macs, param_count

logger = logging.getLogger(__name__)


def prepare_model(arch: str, *, input_size: Tuple[int, int] = (256, 256), batch_max: int = 32,
                  half: bool = False, onnx: bool = True, ort_graph: bool = False,
                  cache: Optional[str] = None) -> PreparedModel:
    """The host half of :func:`cvnet.benchmarks.models.prepare_model` (its arguments): makes an
    untrained ``arch`` as ``model.pt`` (seed 0), counts its parameters and GMACs and, with
    ``onnx``, exports it unverified for batches 1..``batch_max`` (with ``ort_graph``, a second
    time with ``--optimize-for onnxruntime``); a cached model that answers the request is
    returned as it is.

    Raises:
        ConfigError, ExportError: The model cannot be built or exported.
    """
    height, width = int(input_size[0]), int(input_size[1])
    request = bench_request(arch, (height, width), batch_max, half)
    folder = model_folder(arch, (height, width), half, cache)
    ort_graph = bool(ort_graph and onnx and not half)  # the rewrite is for FP32 graphs
    found = cached(folder, request, onnx, ort_graph)
    if found is not None:
        logger.info("%s: using the cached model in %s", arch, folder)
        return found
    make_folders(folder)
    # New names: the exports a running benchmark times (a narrower batch range, an older cache
    # version) are left in place, never removed or replaced under it.
    onnx_path = os.path.join(folder, new_onnx_name())
    ort_path = os.path.join(folder, new_onnx_name(".ort.onnx"))
    logger.info("%s: building an untrained model in %s", arch, folder)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    checkpoint = save_checkpoint(os.path.join(folder, CHECKPOINT_FILE), model, arch=arch)
    gmacs = round(count_macs(model, (3, height, width)).get("", 0) / 1e9, 4)
    params = param_count(model)
    del model
    if onnx:
        logger.info("%s: exporting to ONNX for batches 1..%d (not verified: timing does not "
                    "depend on the weights)", arch, batch_max)
        for path, target in [(onnx_path, "any")] + ([(ort_path, "onnxruntime")] if ort_graph
                                                     else []):
            pipeline.export_model(checkpoint, pipeline.ExportOptions(
                output=path, arch=arch, input_size=(height, width),
                dynamic_batch=(1, max(int(batch_max), 1)), half=half, verify=False,
                optimize_for=target))
    write_bench_info(folder, request, params=params, gmacs=gmacs,
                     onnx_file=onnx_path if onnx else None,
                     ort_onnx_file=ort_path if onnx and ort_graph else None)
    return PreparedModel(arch=arch, checkpoint=checkpoint, onnx=onnx_path if onnx else None,
                         params=params, gmacs=gmacs, input_size=(height, width),
                         ort_onnx=ort_path if onnx and ort_graph else None)
