"""One synthetic vehicle drawn on a transparent BGRA layer: from the side or from above."""

from typing import Sequence, Tuple

import cv2
import numpy as np

from cvnet.core.synth.vehicles import VehicleSpec

_GLASS = (70, 50, 35)


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


def ground_layer(spec: VehicleSpec, work: int, depth: float, mirrored: bool) -> np.ndarray:
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


def aerial_layer(spec: VehicleSpec, work: int) -> np.ndarray:
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
