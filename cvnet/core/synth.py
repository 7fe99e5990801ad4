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

Command: ``cvnet-synth OUT_DIR [--ids 100] [--images-per-view 4] [--size 128] [--seed 0]
[--force]`` (also ``python -m cvnet.core.synth``) writes ``OUT_DIR/images/*.jpg`` and
``OUT_DIR/dataset.csv`` in the generic CSV format (:mod:`cvnet.core.datasets`): a 50/50 identity split
into ``train`` and ``test``, views A and G for every identity.

Example:
    >>> crops = sample_images(8, seed=0, size=128)     # 8 (128, 128, 3) uint8 BGR crops, G/A
"""

import argparse
import logging
import os
import shutil
import sys
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from cvnet.core.cli_help import ArgumentParser
from cvnet.core.datasets import CSV_NAME, ImageRecord, write_csv
from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_bytes_atomic

logger = logging.getLogger(__name__)

#: Camera names per view; the index is the drone height (A) or ground viewpoint (G).
CAMERAS = {"A": ("A0", "A1", "A2"), "G": ("G0", "G1", "G2")}
#: Vehicle kinds and their shape ranges: (length, width/length, body height/length,
#: cabin start, cabin end, cabin height/length, cargo).
KINDS = {
    "sedan": ((0.90, 1.00), (0.40, 0.46), (0.13, 0.16), (0.22, 0.30), (0.66, 0.74), (0.11, 0.14),
              ""),
    "hatchback": ((0.80, 0.88), (0.42, 0.48), (0.14, 0.17), (0.06, 0.12), (0.64, 0.72),
                  (0.13, 0.16), ""),
    "suv": ((0.90, 1.00), (0.42, 0.48), (0.18, 0.22), (0.05, 0.10), (0.66, 0.74), (0.14, 0.17),
            ""),
    "van": ((0.92, 1.00), (0.40, 0.45), (0.17, 0.20), (0.02, 0.05), (0.78, 0.86), (0.19, 0.23),
            ""),
    "pickup": ((0.94, 1.00), (0.40, 0.45), (0.15, 0.18), (0.44, 0.50), (0.74, 0.80),
               (0.13, 0.16), "bed"),
    "truck": ((0.96, 1.00), (0.36, 0.42), (0.16, 0.19), (0.76, 0.80), (0.96, 0.98), (0.20, 0.24),
              "box"),
    "bus": ((0.98, 1.00), (0.28, 0.32), (0.16, 0.19), (0.02, 0.04), (0.96, 0.98), (0.16, 0.19),
            ""),
}
_KIND_WEIGHTS = {"sedan": 4, "hatchback": 3, "suv": 3, "van": 2, "pickup": 2, "truck": 1,
                 "bus": 1}
# Achromatic body colours (BGR) most real cars have; the rest get a random hue.
_NEUTRALS = ((245, 245, 245), (30, 30, 32), (150, 150, 150), (195, 198, 200), (90, 92, 95))
_STRIPES = ("none", "none", "single", "double", "band")
_PATTERNS = ("none", "none", "none", "checker", "dots")
_GLASS = (70, 50, 35)
# Per-camera look: (scale of the vehicle in frame, gain, BGR cast, blur sigma, kept resolution).
_CAMERA_LOOK = {
    "A0": (0.62, 1.10, (1.05, 1.00, 0.95), 0.6, 0.85),
    "A1": (0.52, 0.95, (0.95, 1.00, 1.04), 0.9, 0.65),
    "A2": (0.43, 1.20, (1.10, 1.02, 0.92), 1.2, 0.50),
    "G0": (0.92, 1.00, (0.95, 1.00, 1.06), 0.4, 1.00),
    "G1": (0.90, 0.85, (1.00, 1.00, 1.00), 0.5, 1.00),
    "G2": (0.80, 1.05, (1.06, 1.02, 0.94), 0.5, 0.90),
}


class VehicleSpec(NamedTuple):
    """Everything that makes one synthetic identity; shared by all its images.

    Lengths are fractions of the vehicle's length; colours are BGR 0..255.
    """

    vehicle_id: int
    kind: str
    length: float
    width: float
    body_height: float
    cab_start: float
    cab_end: float
    cab_height: float
    cargo: str
    body_color: Tuple[int, int, int]
    roof_color: Tuple[int, int, int]
    trim_color: Tuple[int, int, int]
    stripe: str
    stripe_color: Tuple[int, int, int]
    roof_sign: bool
    number: str
    pattern: str


def random_vehicle(vehicle_id: int, seed: int = 0) -> VehicleSpec:
    """The identity ``vehicle_id`` of the synthetic world ``seed`` (the same for any --ids)."""
    rng = _rng(seed, vehicle_id, 0)
    kinds = sorted(KINDS)
    weights = np.array([_KIND_WEIGHTS[k] for k in kinds], np.float64)
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    length, width, body, cab_start, cab_end, cab_height, cargo = KINDS[kind]
    body_color = _random_color(rng)
    roof_color = body_color if rng.rand() < 0.6 else _random_color(rng)
    if cargo == "box":
        roof_color = _random_color(rng) if rng.rand() < 0.5 else (235, 235, 235)
    stripe = _STRIPES[rng.randint(len(_STRIPES))]
    return VehicleSpec(
        vehicle_id=vehicle_id, kind=kind, length=rng.uniform(*length), width=rng.uniform(*width),
        body_height=rng.uniform(*body), cab_start=rng.uniform(*cab_start),
        cab_end=rng.uniform(*cab_end), cab_height=rng.uniform(*cab_height), cargo=cargo,
        body_color=body_color, roof_color=roof_color,
        trim_color=(20, 20, 20) if rng.rand() < 0.7 else (200, 200, 205),
        stripe=stripe, stripe_color=_contrasting_color(rng, body_color),
        roof_sign=bool(rng.rand() < 0.3),
        number=str(rng.randint(1, 1000)) if rng.rand() < 0.5 else "",
        pattern=_PATTERNS[rng.randint(len(_PATTERNS))])


def render_image(spec: VehicleSpec, view: str, camera: str, rng: np.random.RandomState,
                 size: int = 128) -> np.ndarray:
    """One image of a vehicle.

    Args:
        spec: The identity.
        view: ``"A"`` (aerial, top-down) or ``"G"`` (ground, side).
        camera: One of ``CAMERAS[view]``; sets scale, lighting, blur and viewpoint.
        rng: Source of the per-image nuisance (pose, background, noise).
        size: Output side in pixels.

    Returns:
        (size, size, 3) uint8 BGR.
    """
    if view not in CAMERAS or camera not in CAMERAS[view]:
        raise ConfigError("camera {!r} does not belong to view {!r}; views and cameras: {}"
                          .format(camera, view, CAMERAS))
    work = 2 * size  # drawn at twice the size, reduced with area interpolation
    scale, gain, cast, blur, keep = _CAMERA_LOOK[camera]
    if view == "A":
        background = _aerial_background(rng, work)
        layer = _aerial_layer(spec, work)
        layer = _place(layer, work, scale * rng.uniform(0.9, 1.1), rng.uniform(0, 360),
                       rng.uniform(-0.06, 0.06, 2) * work)
        image = _composite(background, layer, shadow=(int(0.04 * work), int(0.05 * work)))
    else:
        background = _ground_background(rng, work)
        depth = {"G0": 0.06, "G1": 0.06, "G2": 0.14}[camera] + rng.uniform(-0.02, 0.02)
        layer = _ground_layer(spec, work, depth, mirrored=camera == "G1")
        layer = _place(layer, work, scale * rng.uniform(0.92, 1.05), rng.uniform(-4, 4),
                       rng.uniform(-0.04, 0.04, 2) * work)
        image = _composite(background, layer, shadow=None)
    light = (gain * rng.uniform(0.8, 1.2) * np.asarray(cast) * rng.uniform(0.94, 1.06, 3))
    image = np.clip(image * light.astype(np.float32), 0, 255)
    image = 255.0 * (image / np.float32(255.0)) ** np.float32(rng.uniform(0.8, 1.25))  # gamma
    image = cv2.GaussianBlur(image, (0, 0), blur * rng.uniform(0.6, 1.4))
    if keep < 1.0:  # drone footage: fewer pixels on the vehicle
        low = max(8, int(work * keep * rng.uniform(0.85, 1.15)))
        image = cv2.resize(cv2.resize(image, (low, low), interpolation=cv2.INTER_AREA),
                           (work, work), interpolation=cv2.INTER_LINEAR)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    image += rng.normal(0.0, rng.uniform(2.0, 6.0), image.shape).astype(np.float32)  # sensor
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def sample_images(count: int, seed: int = 0, size: int = 128) -> List[np.ndarray]:
    """Random synthetic vehicle crops in both views (ground first, then alternating).

    Args:
        count: Number of images.
        seed: Seed of the identities and nuisances.
        size: Side in pixels.

    Returns:
        ``count`` (size, size, 3) uint8 BGR images.
    """
    rng = _rng(seed, 1 << 20)
    images = []
    for index in range(count):
        spec = random_vehicle(int(rng.randint(1, 1 << 20)), seed)
        view = "GA"[index % 2]
        camera = CAMERAS[view][rng.randint(3)]
        images.append(render_image(spec, view, camera, rng, size))
    return images


def generate_dataset(out_dir: str, *, ids: int = 100, images_per_view: int = 4,
                     size: int = 128, seed: int = 0, force: bool = False) -> str:
    """Writes the synthetic set: ``out_dir/images/*.jpg`` and ``out_dir/dataset.csv``.

    Identities 1..ids are split 50/50 at random (the seed) into train and test; each gets
    ``images_per_view`` aerial and ground images, cameras cycling through the view's three.
    The CSV is written last and atomically, so it only appears for a complete set.

    Args:
        out_dir: Output folder; created if needed, refused if non-empty unless ``force``.
        ids: Number of identities (at least 2).
        images_per_view: Images per identity and view (at least 1).
        size: Image side in pixels (at least 32).
        seed: World seed; the same seed gives the same files.
        force: Replace ``images/`` and ``dataset.csv`` of a non-empty ``out_dir`` (other files
            there are left alone).

    Returns:
        The path of the written CSV.
    """
    if ids < 2 or images_per_view < 1 or size < 32:
        raise ConfigError("need ids >= 2, images_per_view >= 1 and size >= 32, got ids={}, "
                          "images_per_view={}, size={}".format(ids, images_per_view, size))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError("{} exists and is not a folder; give a folder for the set".format(
            out_dir))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise ConfigError("{} is not empty; choose a new folder or pass --force (force=True) to "
                          "replace its images/ and {}".format(out_dir, CSV_NAME))
    order = _rng(seed, 1 << 21).permutation(np.arange(1, ids + 1))
    csv_path, image_dir = os.path.join(out_dir, CSV_NAME), os.path.join(out_dir, "images")
    if os.path.isfile(csv_path):
        os.remove(csv_path)  # first, so that an interrupted run leaves no CSV over stale images
    if os.path.isdir(image_dir):
        shutil.rmtree(image_dir)
    make_folders(image_dir)
    train_ids = set(order[:ids // 2].tolist())
    records = []
    total, last_log = ids * 2 * images_per_view, time.monotonic()
    for vehicle_id in range(1, ids + 1):
        spec = random_vehicle(vehicle_id, seed)
        split = "train" if vehicle_id in train_ids else "test"
        for view_index, view in enumerate("AG"):
            offset = _rng(seed, vehicle_id, 1 + view_index).randint(3)
            for number in range(images_per_view):
                camera = CAMERAS[view][(offset + number) % 3]
                rng = _rng(seed, vehicle_id, 10 + view_index, number)
                image = render_image(spec, view, camera, rng, size)
                name = "{:04d}_{}_{}_{}.jpg".format(vehicle_id, view, camera, number)
                path = os.path.join(image_dir, name)
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise ConfigError("OpenCV could not encode {} as JPEG".format(name))
                write_bytes_atomic(path, data.tobytes())
                records.append(ImageRecord(os.path.realpath(path), str(vehicle_id), camera, view,
                                           split))
        if time.monotonic() - last_log > 5.0 or vehicle_id == ids:
            last_log = time.monotonic()
            logger.info("rendered %d/%d images (%d/%d identities)", len(records), total,
                        vehicle_id, ids)
    write_csv(records, csv_path)
    return csv_path


# ---------------------------------------------------------------------------------- drawing


def _rng(*keys: int) -> np.random.RandomState:
    """An independent random stream for a tuple of non-negative keys (seed, id, ...)."""
    if any(key < 0 for key in keys):
        raise ConfigError("seeds and ids must be non-negative, got {}".format(keys))
    return np.random.RandomState(list(keys))


def _random_color(rng: np.random.RandomState) -> Tuple[int, int, int]:
    if rng.rand() < 0.35:
        base = np.array(_NEUTRALS[rng.randint(len(_NEUTRALS))], np.float64)
        return tuple(int(v) for v in np.clip(base + rng.uniform(-10, 10), 0, 255))
    hsv = np.uint8([[[rng.randint(0, 180), rng.randint(110, 256), rng.randint(90, 240)]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _contrasting_color(rng: np.random.RandomState, color: Tuple[int, int, int]
                       ) -> Tuple[int, int, int]:
    for _ in range(20):
        candidate = _random_color(rng)
        if np.abs(np.subtract(candidate, color)).sum() > 180:
            return candidate
    return (255, 255, 255) if sum(color) < 384 else (20, 20, 20)


def _shade(color: Sequence[int], factor: float) -> Tuple[int, int, int, int]:
    """BGRA of a colour scaled by factor (alpha opaque), for drawing on a layer."""
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color[:3]) + (255,)


def _poly(layer: np.ndarray, points, color) -> None:
    cv2.fillPoly(layer, [np.round(np.asarray(points)).astype(np.int32)], color, cv2.LINE_AA)


def _rect(layer: np.ndarray, x0: float, y0: float, x1: float, y1: float, color) -> None:
    _poly(layer, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)


def _text(layer: np.ndarray, text: str, center: Tuple[float, float], height: float,
          color) -> None:
    """Draws text of about ``height`` pixels centred on ``center``."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, int(height / 6))
    (width, base), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = height / float(base)
    (width, base), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = (int(center[0] - width / 2), int(center[1] + base / 2))
    cv2.putText(layer, text, origin, font, scale, color, thickness, cv2.LINE_AA)


def _pattern(layer: np.ndarray, kind: str, box: Tuple[float, float, float, float],
             color) -> None:
    """A checker row or dots inside box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cell = max(2.0, (y1 - y0) / 2.0)
    columns = max(2, int((x1 - x0) / cell))
    for column in range(columns):
        cx = x0 + (column + 0.5) * (x1 - x0) / columns
        for row in range(2):
            cy = y0 + (row + 0.5) * (y1 - y0) / 2.0
            if kind == "checker" and (row + column) % 2 == 0:
                _rect(layer, cx - cell / 2, cy - cell / 2, cx + cell / 2, cy + cell / 2, color)
            elif kind == "dots" and row == column % 2:
                cv2.circle(layer, (int(cx), int(cy)), max(1, int(cell * 0.35)), color, -1,
                           cv2.LINE_AA)


def _ground_layer(spec: VehicleSpec, work: int, depth: float, mirrored: bool) -> np.ndarray:
    """The vehicle from the side in three-quarter view on a BGRA layer.

    It faces right, or left when mirrored (seen from its other side; the number still reads
    left to right).
    """
    layer = np.zeros((work, work, 4), np.uint8)
    span = work * 0.86 / (1.0 + depth)
    length = span * spec.length
    dx, dy = depth * span, -0.6 * depth * span  # offset of the far side (up and right)
    x0 = (work - length - dx) / 2.0
    ground = work * 0.72
    wheel = length * 0.075
    bottom = ground - wheel * 0.7
    top = bottom - length * spec.body_height
    cab_top = top - length * spec.cab_height

    def x(fraction):  # position along the vehicle (0 = rear, 1 = front)
        return x0 + fraction * length
    body, roof = spec.body_color, spec.roof_color

    # far side and roof seen in perspective: a darker copy offset by the depth
    _poly(layer, [(x(0.0), top), (x(0.0) + dx, top + dy), (x(1.0) + dx, top + dy),
                  (x(1.0), top)], _shade(body, 0.75))
    _poly(layer, [(x(1.0), top), (x(1.0) + dx, top + dy), (x(1.0) + dx, bottom + dy),
                  (x(1.0), bottom)], _shade(body, 0.6))  # front face
    hood = 0.97 if spec.cargo else 0.92
    _rect(layer, x(1.0) + dx * 0.2, bottom - (bottom - top) * 0.75, x(1.0) + dx * 0.5,
          bottom - (bottom - top) * 0.5, _shade((200, 240, 255), 1.0))  # headlight
    if spec.cargo == "box":
        box_top = top - length * spec.cab_height * 1.35
        _poly(layer, [(x(0.0), box_top), (x(0.0) + dx, box_top + dy),
                      (x(spec.cab_start - 0.03) + dx, box_top + dy),
                      (x(spec.cab_start - 0.03), box_top)], _shade(roof, 0.85))
        _rect(layer, x(0.0), box_top, x(spec.cab_start - 0.03), bottom, _shade(roof, 1.0))
    cab = [(x(spec.cab_start), top), (x(spec.cab_start + 0.07), cab_top),
           (x(spec.cab_end - 0.1 * (1 - hood)), cab_top), (x(min(spec.cab_end + 0.08, hood)), top)]
    if spec.kind in ("van", "bus", "truck"):
        cab = [(x(spec.cab_start), top), (x(spec.cab_start), cab_top),
               (x(spec.cab_end - 0.04), cab_top), (x(spec.cab_end), top)]
    _poly(layer, [cab[1], (cab[1][0] + dx, cab[1][1] + dy), (cab[2][0] + dx, cab[2][1] + dy),
                  cab[2]], _shade(roof, 0.8))  # the roof's top face in perspective
    _poly(layer, cab, _shade(roof, 1.0))
    # windows: glass inset into the cabin, split by pillars
    inset = (top - cab_top) * 0.18
    glass = [(cab[0][0] + inset * 1.5, top - inset * 0.5), (cab[1][0] + inset, cab_top + inset),
             (cab[2][0] - inset, cab_top + inset), (cab[3][0] - inset * 1.5, top - inset * 0.5)]
    _poly(layer, glass, _shade(_GLASS, 1.0))
    pillars = 5 if spec.kind == "bus" else 3 if spec.kind == "van" else 2
    for index in range(1, pillars):
        px = glass[0][0] + (glass[3][0] - glass[0][0]) * index / pillars
        _rect(layer, px - inset * 0.4, cab_top, px + inset * 0.4, top, _shade(roof, 1.0))
    if spec.roof_sign:
        sign_x = x((spec.cab_start + spec.cab_end) / 2.0)
        _rect(layer, sign_x - length * 0.05, cab_top - length * 0.04 + dy * 0.5,
              sign_x + length * 0.05, cab_top + dy * 0.5, _shade(spec.stripe_color, 1.0))
    # lower body
    _poly(layer, [(x(0.0), top + (bottom - top) * 0.1), (x(0.02), top), (x(0.98), top),
                  (x(1.0), top + (bottom - top) * 0.3), (x(1.0), bottom), (x(0.0), bottom)],
          _shade(body, 1.0))
    if spec.cargo == "bed":
        _rect(layer, x(0.02), top, x(spec.cab_start - 0.01), top + (bottom - top) * 0.15,
              _shade(body, 0.7))
    _rect(layer, x(0.0), bottom - (bottom - top) * 0.15, x(1.0), bottom,
          _shade(spec.trim_color, 1.0))  # bumper / sill line
    band_top, band_bottom = top + (bottom - top) * 0.35, top + (bottom - top) * 0.55
    if spec.stripe in ("single", "band"):
        thick = 1.0 if spec.stripe == "band" else 0.45
        _rect(layer, x(0.01), band_top, x(0.99), band_top + (band_bottom - band_top) * thick,
              _shade(spec.stripe_color, 1.0))
    elif spec.stripe == "double":
        for offset in (0.0, 0.6):
            _rect(layer, x(0.01), band_top + (band_bottom - band_top) * offset, x(0.99),
                  band_top + (band_bottom - band_top) * (offset + 0.3),
                  _shade(spec.stripe_color, 1.0))
    if spec.pattern != "none":
        _pattern(layer, spec.pattern, (x(0.05), band_bottom + 2, x(0.95),
                                       bottom - (bottom - top) * 0.2),
                 _shade(spec.stripe_color, 1.0))
    axles = (0.16, 0.84) if spec.kind not in ("truck", "bus") else (0.12, 0.3, 0.85)
    for axle in axles:
        center = (int(x(axle)), int(ground - wheel))
        cv2.circle(layer, center, int(wheel), _shade((25, 25, 25), 1.0), -1, cv2.LINE_AA)
        cv2.circle(layer, center, int(wheel * 0.5), _shade((170, 170, 175), 1.0), -1,
                   cv2.LINE_AA)
    if mirrored:
        layer = np.ascontiguousarray(layer[:, ::-1])
    if spec.number:  # drawn after mirroring so that it reads left to right on both sides
        door = x((spec.cab_start + spec.cab_end) / 2.0)
        _text(layer, spec.number, (work - door if mirrored else door, (top + band_top) / 2.0 + 1),
              (band_top - top) * 0.8,
              _shade((255, 255, 255) if sum(spec.body_color) < 400 else (15, 15, 15), 1.0))
    return layer


def _aerial_layer(spec: VehicleSpec, work: int) -> np.ndarray:
    """The vehicle from above, facing right, centred on a BGRA layer."""
    layer = np.zeros((work, work, 4), np.uint8)
    length = work * 0.9 * spec.length
    width = length * spec.width
    x0, y0 = (work - length) / 2.0, (work - width) / 2.0

    def x(fraction):  # along the vehicle (0 = rear, 1 = front)
        return x0 + fraction * length

    def y(fraction):  # across it (0 = left, 1 = right side)
        return y0 + fraction * width
    body, roof = spec.body_color, spec.roof_color
    for axle in ((0.16, 0.84) if spec.kind not in ("truck", "bus") else (0.12, 0.3, 0.85)):
        for side in (-0.04, 0.92):  # tyres peeking out at the sides
            _rect(layer, x(axle - 0.06), y(side), x(axle + 0.06), y(side + 0.12),
                  _shade((25, 25, 25), 1.0))
    corner = width * 0.18
    body_box = (int(x(0)), int(y(0.02)), int(x(1)), int(y(0.98)))
    cv2.rectangle(layer, (body_box[0] + int(corner), body_box[1]),
                  (body_box[2] - int(corner), body_box[3]), _shade(body, 1.0), -1, cv2.LINE_AA)
    cv2.rectangle(layer, (body_box[0], body_box[1] + int(corner)),
                  (body_box[2], body_box[3] - int(corner)), _shade(body, 1.0), -1, cv2.LINE_AA)
    for cx in (body_box[0] + corner, body_box[2] - corner):
        for cy in (body_box[1] + corner, body_box[3] - corner):
            cv2.circle(layer, (int(cx), int(cy)), int(corner), _shade(body, 1.0), -1, cv2.LINE_AA)
    if spec.cargo == "bed":
        _rect(layer, x(0.04), y(0.12), x(spec.cab_start - 0.02), y(0.88), _shade(body, 0.45))
    elif spec.cargo == "box":
        _rect(layer, x(0.0), y(0.0), x(spec.cab_start - 0.03), y(1.0), _shade(roof, 1.0))
        _rect(layer, x(0.03), y(0.45), x(spec.cab_start - 0.06), y(0.55), _shade(roof, 0.85))
    # cabin: rear window, roof, windscreen (front is at the right)
    windscreen = 0.10 if spec.kind not in ("van", "bus", "truck") else 0.05
    rear = 0.06 if not spec.cargo and spec.kind not in ("bus",) else 0.03
    _poly(layer, [(x(spec.cab_start), y(0.14)), (x(spec.cab_start + rear), y(0.1)),
                  (x(spec.cab_start + rear), y(0.9)), (x(spec.cab_start), y(0.86))],
          _shade(_GLASS, 1.1))
    _rect(layer, x(spec.cab_start + rear), y(0.1), x(spec.cab_end - windscreen), y(0.9),
          _shade(roof, 1.0))
    _poly(layer, [(x(spec.cab_end - windscreen), y(0.1)), (x(spec.cab_end), y(0.16)),
                  (x(spec.cab_end), y(0.84)), (x(spec.cab_end - windscreen), y(0.9))],
          _shade(_GLASS, 1.0))
    for side in (-0.06, 0.98):  # mirrors
        _rect(layer, x(spec.cab_end - 0.02), y(side), x(spec.cab_end + 0.01), y(side + 0.08),
              _shade(body, 0.8))
    if spec.stripe in ("single", "double"):
        offsets = (0.44,) if spec.stripe == "single" else (0.3, 0.6)
        for offset in offsets:
            _rect(layer, x(0.01), y(offset), x(0.99), y(offset + 0.11),
                  _shade(spec.stripe_color, 1.0))
    elif spec.stripe == "band":
        middle = (spec.cab_start + spec.cab_end) / 2.0
        _rect(layer, x(middle - 0.05), y(0.02), x(middle + 0.05), y(0.98),
              _shade(spec.stripe_color, 1.0))
    if spec.pattern != "none":
        _pattern(layer, spec.pattern, (x(min(spec.cab_end + 0.02, 0.9)), y(0.2), x(0.97), y(0.8)),
                 _shade(spec.stripe_color, 1.0))
    roof_middle = (x((spec.cab_start + spec.cab_end) / 2.0), y(0.5))
    if spec.roof_sign:
        _rect(layer, roof_middle[0] - length * 0.04, y(0.3), roof_middle[0] + length * 0.04,
              y(0.7), _shade(spec.stripe_color, 1.0))
    if spec.number:
        text_color = (255, 255, 255) if sum(spec.roof_color) < 400 else (15, 15, 15)
        roof_length = (spec.cab_end - spec.cab_start) * length
        center = (roof_middle[0] + (length * 0.07 if spec.roof_sign else 0.0), roof_middle[1])
        _text(layer, spec.number, center, min(width * 0.35, roof_length * 0.3),
              _shade(text_color, 1.0))
    return layer


def _place(layer: np.ndarray, work: int, scale: float, angle: float,
           shift: np.ndarray) -> np.ndarray:
    """Scales and rotates a layer about its centre (degrees, counter-clockwise) and shifts it."""
    matrix = cv2.getRotationMatrix2D((work / 2.0, work / 2.0), angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(layer, matrix, (work, work), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))


def _composite(background: np.ndarray, layer: np.ndarray,
               shadow: Optional[Tuple[int, int]]) -> np.ndarray:
    """Alpha-blends a BGRA layer over a float BGR background, with an optional cast shadow."""
    alpha = layer[:, :, 3:].astype(np.float32) / 255.0
    if shadow is not None:
        matrix = np.float32([[1, 0, shadow[0]], [0, 1, shadow[1]]])
        shade = cv2.warpAffine(alpha[:, :, 0], matrix, alpha.shape[1::-1])
        shade = cv2.GaussianBlur(shade, (0, 0), max(1.0, shadow[0] * 0.5))[:, :, None]
        background = background * (1.0 - 0.45 * shade)
    else:  # contact shadow under a ground vehicle
        rows = np.flatnonzero(alpha[:, :, 0].max(axis=1) > 0.5)
        cols = np.flatnonzero(alpha[:, :, 0].max(axis=0) > 0.5)
        if len(rows) and len(cols):
            mask = np.zeros(alpha.shape[:2], np.float32)
            center = (int((cols[0] + cols[-1]) / 2), int(rows[-1]))
            axes = (int((cols[-1] - cols[0]) * 0.55), max(2, int(len(rows) * 0.08)))
            cv2.ellipse(mask, center, axes, 0, 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, axes[1] * 0.6))[:, :, None]
            background = background * (1.0 - 0.5 * mask)
    return background * (1.0 - alpha) + layer[:, :, :3].astype(np.float32) * alpha


def _texture(rng: np.random.RandomState, work: int, cells: int, strength: float) -> np.ndarray:
    """Smooth random (work, work, 1) float texture around 0 with about ``cells`` blobs a side."""
    noise = rng.normal(0.0, strength, (cells, cells)).astype(np.float32)
    smooth = cv2.resize(noise, (work, work), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, strength * 0.5, (work, work)).astype(np.float32)
    return (smooth + grain)[:, :, None]


def _aerial_background(rng: np.random.RandomState, work: int) -> np.ndarray:
    """Asphalt, concrete or grass seen from above, with painted lines; float BGR."""
    surface = rng.randint(3)
    base = [(70, 72, 75), (140, 140, 135), (60, 110, 70)][surface]
    base = np.array(base, np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-10, 10, 3)
    image = np.ones((work, work, 3), np.float32) * base + _texture(rng, work, 6, 14.0)
    if surface != 2 and rng.rand() < 0.8:
        paint = (230, 230, 230) if rng.rand() < 0.6 else (40, 200, 230)
        angle, gap = rng.uniform(0, np.pi), rng.uniform(0.3, 0.6) * work
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        for step in range(-2, 3):
            center = work / 2.0 + normal * (step * gap + rng.uniform(-5, 5))
            start, end = center - direction * work, center + direction * work
            cv2.line(image, tuple(int(v) for v in start), tuple(int(v) for v in end), paint,
                     max(1, work // 60), cv2.LINE_AA)
    return image


def _ground_background(rng: np.random.RandomState, work: int) -> np.ndarray:
    """A wall, hedge or sky above a road, seen from the side; float BGR."""
    horizon = int(work * rng.uniform(0.45, 0.62))
    upper = [(200, 170, 130), (60, 120, 70), (150, 150, 155), (90, 100, 140)][rng.randint(4)]
    upper = np.array(upper, np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-15, 15, 3)
    road = np.array((85, 87, 90), np.float32) * rng.uniform(0.7, 1.3)
    image = np.ones((work, work, 3), np.float32) * road
    image[:horizon] = upper
    image += _texture(rng, work, 5, 12.0)
    gradient = np.linspace(1.1, 0.9, work, dtype=np.float32)[:, None, None]
    image *= gradient
    if rng.rand() < 0.6:  # a lane marking below the vehicle
        y = int(work * rng.uniform(0.86, 0.95))
        cv2.line(image, (0, y), (work, y), (220, 220, 220), max(1, work // 80), cv2.LINE_AA)
    return image


# ---------------------------------------------------------------------------------- command


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-synth",
        description="Write a procedural cross-view (aerial/ground) vehicle ReID set in cvnet's "
                    "generic CSV format, for running training, evaluation, export and "
                    "extraction end to end. Not a substitute for real data.")
    parser.add_argument("out_dir", help="output folder (must be empty or new unless --force)")
    parser.add_argument("--ids", type=int, default=100,
                        help="number of vehicle identities, split 50/50 into train and test "
                             "(default: 100)")
    parser.add_argument("--images-per-view", type=int, default=4,
                        help="images per identity and view, A and G (default: 4)")
    parser.add_argument("--size", type=int, default=128,
                        help="image side in pixels (default: 128)")
    parser.add_argument("--seed", type=int, default=0,
                        help="world seed; the same seed writes the same files (default: 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace images/ and dataset.csv in a non-empty OUT_DIR")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        csv_path = generate_dataset(args.out_dir, ids=args.ids,
                                    images_per_view=args.images_per_view, size=args.size,
                                    seed=args.seed, force=args.force)
    except ConfigError as err:
        logger.error("%s", err)
        return 2
    print(csv_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
