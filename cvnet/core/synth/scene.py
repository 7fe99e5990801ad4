"""One synthetic image: a vehicle layer posed over a background, seen through a camera."""

from typing import Optional, Tuple

import cv2
import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.synth.drawing import aerial_layer, ground_layer
from cvnet.core.synth.vehicles import CAMERAS, VehicleSpec

# Per-camera look: (scale of the vehicle in frame, gain, BGR cast, blur sigma, kept resolution).
_CAMERA_LOOK = {
    "A0": (0.62, 1.10, (1.05, 1.00, 0.95), 0.6, 0.85),
    "A1": (0.52, 0.95, (0.95, 1.00, 1.04), 0.9, 0.65),
    "A2": (0.43, 1.20, (1.10, 1.02, 0.92), 1.2, 0.50),
    "G0": (0.92, 1.00, (0.95, 1.00, 1.06), 0.4, 1.00),
    "G1": (0.90, 0.85, (1.00, 1.00, 1.00), 0.5, 1.00),
    "G2": (0.80, 1.05, (1.06, 1.02, 0.94), 0.5, 0.90),
}


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
        layer = aerial_layer(spec, work)
        layer = _place(layer, work, scale * rng.uniform(0.9, 1.1), rng.uniform(0, 360),
                       rng.uniform(-0.06, 0.06, 2) * work)
        image = _composite(background, layer, shadow=(int(0.04 * work), int(0.05 * work)))
    else:
        background = _ground_background(rng, work)
        depth = {"G0": 0.06, "G1": 0.06, "G2": 0.14}[camera] + rng.uniform(-0.02, 0.02)
        layer = ground_layer(spec, work, depth, mirrored=camera == "G1")
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
