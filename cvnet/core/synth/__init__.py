"""A procedural cross-view vehicle set: every identity seen from the ground and from a drone.

Not a substitute for CVPair or any real data: it exists so that training, evaluation, export and
on-device extraction can run end to end anywhere, and so that their tests have images with a
learnable, cross-view identity signal.

An identity (:class:`VehicleSpec`) is a body shape (kind, length, width and height ratios, where
the cabin sits), colours (body, roof, trim) and markings (stripes, a roof sign, a number, a
checker or dot pattern). Each image renders it in one view:

- ground (``G``): side view in three-quarter perspective, large in frame, wheels visible,
  cameras ``G0`` (left side), ``G1`` (right side), ``G2`` (steeper, more of the front and roof);
- aerial (``A``): top-down, rotated by a random angle, smaller in frame, cameras ``A0``..``A2``
  (higher drone = smaller vehicle and blurrier), with a cast shadow and its own lighting;

with per-image nuisance: background (road, wall, grass, parking lines), pose jitter, lighting,
colour cast, blur, resolution loss and noise. Everything is drawn with OpenCV at twice the
output size and reduced with area interpolation, and is deterministic for a seed.

The package, by job: :mod:`~cvnet.core.synth.vehicles` (the identities),
:mod:`~cvnet.core.synth.drawing` (a vehicle drawn on a layer, from the side or from above),
:mod:`~cvnet.core.synth.scene` (one image: background, pose, camera look),
:mod:`~cvnet.core.synth.dataset` (crops and whole sets) and :mod:`~cvnet.core.synth.cli`.

Command: ``cvnet-synth OUT_DIR [--ids 100] [--images-per-view 4] [--size 128] [--seed 0] [--force]``
(also ``python -m cvnet.core.synth``) writes ``OUT_DIR/images/*.jpg`` and ``OUT_DIR/dataset.csv`` in
the generic CSV format (:mod:`cvnet.core.datasets`): a 50/50 identity split into ``train`` and
``test``, views A and G for every identity.

Example:
    >>> crops = sample_images(8, seed=0, size=128)     # 8 (128, 128, 3) uint8 BGR crops, G/A
"""

from cvnet.core.synth.dataset import generate_dataset, sample_images
from cvnet.core.synth.scene import render_image
from cvnet.core.synth.vehicles import CAMERAS, KINDS, VehicleSpec, random_vehicle

__all__ = ["CAMERAS", "KINDS", "VehicleSpec", "generate_dataset", "random_vehicle",
           "render_image", "sample_images"]
