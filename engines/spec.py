"""What a model takes and gives: its input spec, and decoded images turned into that input.

The spec (:class:`InputSpec`) comes from the sidecar (:func:`spec_from_metadata`), or from the
model's own input shape when there is none (:func:`spec_from_model`); :func:`check_spec` checks
that a sidecar describes the loaded model and :func:`fit_batch_range` narrows the batch range.
:func:`prepare_images` feeds decoded BGR images through the project's one preprocessing path
(:mod:`cvnet.core.preprocess`) into the layout and dtype the spec names. Every runner
(:mod:`cvnet.engines.base`) and the INT8 calibrator use this module. Python 3.6, no torch.
"""

import os
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.artifact import ArtifactMetadata, sidecar_path
from cvnet.core.errors import MetadataError
from cvnet.core.preprocess import PreprocessConfig, preprocess_batch, resize_rgb
from cvnet.engines.errors import EngineInputError, EngineLoadError

#: Largest batch used for a dynamic-batch model that records no range.
DEFAULT_MAX_BATCH = 32


class ModelIO(NamedTuple):
    """A loaded model's single input and output, as the backend sees them.

    Attributes:
        input_name: Name of the input tensor.
        input_shape: Its shape; None (or a negative number) for a dynamic dimension.
        input_dtype: numpy dtype name, e.g. ``"float32"``.
        output_name: Name of the output tensor.
        output_shape: Its shape, ``(N, D)``; None for dynamic dimensions.
        batch_range: (min, max) batch the model itself fixes (a TensorRT profile, a static
            batch dimension), or None when any batch runs.
    """

    input_name: str
    input_shape: Tuple[Optional[int], ...]
    input_dtype: str
    output_name: str
    output_shape: Tuple[Optional[int], ...]
    batch_range: Optional[Tuple[int, int]] = None


class InputSpec(NamedTuple):
    """What a runner feeds its model and gets back; from the sidecar, or the model as fallback.

    Attributes:
        input_name: Name of the model input.
        layout: ``"NCHW"`` (normalised float32 from
            :func:`cvnet.core.preprocess.preprocess_batch`) or ``"NHWC"`` (RGB pixel values from
            :func:`cvnet.core.preprocess.resize_rgb`; the graph normalises them).
        dtype: numpy dtype name of the input, ``"float32"`` or ``"uint8"``.
        height: Input height in pixels.
        width: Input width in pixels.
        preprocess: Size and mean/std for ``preprocess_batch``; None when the graph normalises.
        batch_min: Smallest batch the model runs; shorter batches are padded to it.
        batch_max: Largest batch the model runs; longer inputs are split.
        output_name: Name of the model output.
        embedding_dim: Length of one embedding (None if unknown).
        output_l2_normalized: Whether the model's output is already L2-normalised.
        source: Where this came from: ``"sidecar"``, ``"metadata_props"`` or ``"model input"``.
    """

    input_name: str
    layout: str
    dtype: str
    height: int
    width: int
    preprocess: Optional[PreprocessConfig]
    batch_min: int
    batch_max: int
    output_name: str
    embedding_dim: Optional[int]
    output_l2_normalized: bool
    source: str

    def batch_shape(self, batch: int) -> Tuple[int, int, int, int]:
        """The model input shape for ``batch`` images."""
        if self.layout == "NHWC":
            return (batch, self.height, self.width, 3)
        return (batch, 3, self.height, self.width)


def spec_from_metadata(metadata: ArtifactMetadata, source: str = "sidecar") -> InputSpec:
    """The input spec a sidecar describes."""
    return InputSpec(
        input_name=metadata.input_name, layout=metadata.input_layout,
        dtype=metadata.input_dtype, height=metadata.input_height, width=metadata.input_width,
        preprocess=None if metadata.preprocess_in_graph else metadata.preprocess_config(),
        batch_min=metadata.batch_min, batch_max=metadata.batch_max,
        output_name=metadata.output_name, embedding_dim=metadata.embedding_dim,
        output_l2_normalized=metadata.output_l2_normalized, source=source)


def _known(dim: Any) -> Optional[int]:
    """A fixed dimension as an int; None for dynamic ones (None, -1, a symbolic name)."""
    return int(dim) if isinstance(dim, (int, np.integer)) and dim >= 0 else None


def spec_from_model(io: ModelIO, path: str) -> InputSpec:
    """The fallback input spec when there is no metadata: the model's own input shape.

    ``(N, 3, H, W)`` means normalised float32 input with ImageNet mean/std; ``(N, H, W, 3)``
    means RGB pixels normalised by the graph.

    Raises:
        EngineLoadError: The input shape tells neither layout nor size.
    """
    shape = tuple(_known(d) for d in io.input_shape)
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    elif len(shape) == 4 and shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    else:
        layout, height, width = None, None, None
    if layout is None or height is None or width is None:
        raise EngineLoadError(
            "{}: no sidecar, and the model input {!r} has shape {}, which does not say the image "
            "size and layout (expected (N, 3, H, W) or (N, H, W, 3) with fixed H and W); copy its "
            "sidecar ({}) next to it".format(path, io.input_name, tuple(io.input_shape),
                                             os.path.basename(sidecar_path(path))))
    if layout == "NCHW" and io.input_dtype != "float32":
        raise EngineLoadError("{}: input {!r} is {} {}; cvnet models take float32 NCHW or "
                              "NHWC pixels".format(path, io.input_name, io.input_dtype, layout))
    output = tuple(_known(d) for d in io.output_shape)
    return InputSpec(
        input_name=io.input_name, layout=layout, dtype=io.input_dtype, height=height,
        width=width, preprocess=PreprocessConfig(height, width) if layout == "NCHW" else None,
        batch_min=1, batch_max=DEFAULT_MAX_BATCH, output_name=io.output_name,
        embedding_dim=output[-1] if len(output) == 2 else None, output_l2_normalized=False,
        source="model input")


def check_spec(spec: InputSpec, io: ModelIO, path: str) -> None:
    """Checks that a sidecar's spec describes the loaded model.

    Raises:
        MetadataError: Listing every disagreement (the files come from different exports).
    """
    problems = []
    if spec.input_name != io.input_name:
        problems.append("input name {!r} vs the model's {!r}".format(spec.input_name,
                                                                     io.input_name))
    expected = spec.batch_shape(1)[1:]
    actual = tuple(_known(d) for d in io.input_shape[1:])
    if len(actual) != 3 or any(a is not None and a != e for a, e in zip(actual, expected)):
        problems.append("input shape (N, {}) vs the model's {}".format(
            ", ".join(str(d) for d in expected), tuple(io.input_shape)))
    if spec.dtype != io.input_dtype:
        problems.append("input dtype {} vs the model's {}".format(spec.dtype, io.input_dtype))
    if spec.output_name != io.output_name:
        problems.append("output name {!r} vs the model's {!r}".format(spec.output_name,
                                                                      io.output_name))
    dim = _known(io.output_shape[-1]) if io.output_shape else None
    if dim is not None and spec.embedding_dim is not None and dim != spec.embedding_dim:
        problems.append("embedding_dim {} vs the model's {}".format(spec.embedding_dim, dim))
    if problems:
        raise MetadataError("{} does not match its sidecar ({}): {}; copy the model and the "
                            "sidecar written with it together".format(
                                path, spec.source, "; ".join(problems)))


def fit_batch_range(spec: InputSpec, model_range: Optional[Tuple[int, int]],
                    wanted: Optional[Tuple[int, int]]) -> InputSpec:
    """Sets the batch range: the model's own where it fixes one, narrowed by ``wanted``.

    Raises:
        EngineInputError: ``wanted`` lies outside what the model runs.
    """
    low, high = model_range if model_range is not None else (spec.batch_min, spec.batch_max)
    if wanted is not None:
        if model_range is not None and not (low <= wanted[0] <= wanted[1] <= high):
            raise EngineInputError("batch_range {}:{} is outside what the model runs ({}:{}); "
                                   "pick a range inside it".format(wanted[0], wanted[1], low,
                                                                   high))
        low, high = wanted
    return spec._replace(batch_min=int(low), batch_max=int(high))


def describe(value: Any) -> str:
    """What a value is, for error messages: an array's shape and dtype, else its type."""
    if isinstance(value, np.ndarray):
        return "an array of shape {} dtype {}".format(value.shape, value.dtype)
    return "a {}".format(type(value).__name__)


def validate_images(images: Sequence[Any]) -> None:
    """Checks that every item is a decoded (H, W, 3) uint8 BGR image.

    Raises:
        EngineInputError: Naming the first bad item, what it is and what was expected.
    """
    if len(images) == 0:
        raise EngineInputError("no images given; expected a list of (H, W, 3) uint8 BGR images")
    for i, image in enumerate(images):
        ok = (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
              and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)
        if not ok:
            raise EngineInputError(
                "image {}: expected an (H, W, 3) uint8 BGR array, got {}; decode files with "
                "cvnet.core.preprocess.decode_image, which also turns gray, BGRA and 16-bit images "
                "into that".format(i, describe(image)))


def prepare_images(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Decoded BGR images -> the model input ``spec`` describes, by the shared preprocessing.

    Args:
        images: (H, W, 3) uint8 BGR images of any size.
        spec: The model's input spec.

    Returns:
        ``spec.batch_shape(len(images))`` array of ``spec.dtype``: normalised NCHW float32 from
        :func:`cvnet.core.preprocess.preprocess_batch`, or NHWC RGB pixels from
        :func:`cvnet.core.preprocess.resize_rgb` for a graph that normalises itself.

    Raises:
        EngineInputError: An item is not a decoded BGR image.
    """
    validate_images(images)
    if spec.preprocess is not None:
        return preprocess_batch(images, spec.preprocess)
    pixels = np.stack([resize_rgb(image, (spec.height, spec.width)) for image in images])
    return pixels.astype(spec.dtype)
