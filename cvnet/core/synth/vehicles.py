"""Synthetic vehicle identities: shape, colours and markings, drawn from a seeded stream."""

from typing import NamedTuple, Tuple

import cv2
import numpy as np

from cvnet.core.errors import ConfigError

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
    rng = seeded_rng(seed, vehicle_id, 0)
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


def seeded_rng(*keys: int) -> np.random.RandomState:
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
