"""Ranked-list pictures like the paper's Figure 6 (torch-free, Python 3.6).

One row per query: the query crop, then its top-k gallery crops, each with a green border when
it is the query's identity and red when not (grey when unknown).
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

GREEN = (60, 180, 60)  # BGR
RED = (40, 40, 220)
GREY = (150, 150, 150)
BLUE = (200, 120, 40)


def _tile(image_bgr: np.ndarray, size: Tuple[int, int], color: Tuple[int, int, int],
          label: str, border: int) -> np.ndarray:
    height, width = size
    inner = cv2.resize(image_bgr, (width - 2 * border, height - 2 * border),
                       interpolation=cv2.INTER_AREA)
    tile = cv2.copyMakeBorder(inner, border, border, border, border, cv2.BORDER_CONSTANT,
                              value=color)
    if label:
        cv2.putText(tile, label, (border + 2, height - border - 4), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def ranked_list_row(query_bgr: np.ndarray, gallery_bgr: Sequence[np.ndarray],
                    correct: Optional[Sequence[Optional[bool]]] = None,
                    labels: Optional[Sequence[str]] = None, *,
                    tile_size: Tuple[int, int] = (128, 128), border: int = 4,
                    gap: int = 12) -> np.ndarray:
    """Draws one query and its ranked gallery matches side by side.

    Args:
        query_bgr: The query crop, (H, W, 3) uint8 BGR.
        gallery_bgr: Its top-k gallery crops in rank order.
        correct: Per gallery crop, True (same identity: green), False (red) or None (grey).
        labels: Optional short text per gallery crop (e.g. distance or identity).
        tile_size: (height, width) of each tile in pixels.
        border: Border width in pixels.
        gap: White space between the query and the first match, in pixels.

    Returns:
        (tile_h, (k + 1) * tile_w + gap, 3) uint8 BGR image.
    """
    correct = list(correct) if correct is not None else [None] * len(gallery_bgr)
    labels = list(labels) if labels is not None else [""] * len(gallery_bgr)
    if not len(correct) == len(labels) == len(gallery_bgr):
        raise ValueError("gallery_bgr, correct and labels need one entry per match")
    colors = {True: GREEN, False: RED, None: GREY}
    tiles = [_tile(query_bgr, tile_size, BLUE, "query", border),
             np.full((tile_size[0], gap, 3), 255, np.uint8)]
    for rank, (image, ok, text) in enumerate(zip(gallery_bgr, correct, labels), start=1):
        tiles.append(_tile(image, tile_size, colors[ok], text or "#{}".format(rank), border))
    return np.hstack(tiles)


def stack_rows(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Stacks rows of possibly different widths vertically on a white background."""
    if not rows:
        raise ValueError("no rows to stack")
    width = max(row.shape[1] for row in rows)
    padded = []
    for row in rows:
        canvas = np.full((row.shape[0] + gap, width, 3), 255, np.uint8)
        canvas[:row.shape[0], :row.shape[1]] = row
        padded.append(canvas)
    return np.vstack(padded)


def weights_heatmap(weights: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str],
                    title: str = "", *, cell: Tuple[int, int] = (26, 64)) -> np.ndarray:
    """Draws a table of weights as a heatmap with each value written in its cell.

    Used for the search's per-position op weights (rows = positions, columns = ops). Colours
    span the table's own range (lowest = dark, highest = bright), so small differences between
    nearly uniform weights stay visible; the numbers give the absolute values.

    Args:
        weights: (rows, columns) values; the heaviest of each row is outlined.
        row_labels: One label per row, drawn on the left.
        column_labels: One label per column, drawn on top.
        title: Optional line above the table.
        cell: (height, width) of a cell in pixels.

    Returns:
        (H, W, 3) uint8 BGR image.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape != (len(row_labels), len(column_labels)):
        raise ValueError("weights must be (rows, columns) with one label per row and column, "
                         "got {} for {} x {} labels".format(weights.shape, len(row_labels),
                                                             len(column_labels)))
    cell_h, cell_w = cell
    left, top = 70, cell_h + (22 if title else 4)
    rows, columns = weights.shape
    image = np.full((top + rows * cell_h + 6, left + columns * cell_w + 6, 3), 255, np.uint8)
    font, text = cv2.FONT_HERSHEY_SIMPLEX, (20, 20, 20)
    low, high = float(weights.min()), float(weights.max())
    if title:
        title = "{}   colours: {:.3f} (dark) - {:.3f}".format(title, low, high)
        image = cv2.copyMakeBorder(image, 0, 0, 0, max(0, 7 * len(title) - image.shape[1]),
                                   cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(image, title, (4, 16), font, 0.4, text, 1, cv2.LINE_AA)
    scaled = (weights - low) / (high - low) if high > low else np.full(weights.shape, 0.5)
    levels = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
    colors = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS).reshape(rows,
                                                                                   columns, 3)
    for j, label in enumerate(column_labels):
        cv2.putText(image, str(label), (left + j * cell_w + 4, top - 6), font, 0.45, text, 1,
                    cv2.LINE_AA)
    for i, label in enumerate(row_labels):
        y = top + i * cell_h
        cv2.putText(image, str(label), (4, y + cell_h - 8), font, 0.42, text, 1, cv2.LINE_AA)
        for j in range(columns):
            x = left + j * cell_w
            color = tuple(int(c) for c in colors[i, j])
            cv2.rectangle(image, (x, y), (x + cell_w - 1, y + cell_h - 1), color, -1)
            ink = (255, 255, 255) if scaled[i, j] < 0.6 else (0, 0, 0)
            cv2.putText(image, "{:.3f}".format(weights[i, j]), (x + 8, y + cell_h - 8), font,
                        0.42, ink, 1, cv2.LINE_AA)
        best = int(weights[i].argmax())
        cv2.rectangle(image, (left + best * cell_w, y),
                      (left + (best + 1) * cell_w - 1, y + cell_h - 1), (0, 0, 255), 2)
    return image
