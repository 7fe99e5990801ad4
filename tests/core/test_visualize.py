"""Ranked-list pictures: layout and colour coding."""

import numpy as np
import pytest

from cvnet.core.visualize import GREEN, GREY, RED, ranked_list_row, stack_rows, weights_heatmap

pytestmark = pytest.mark.device


def _crop(value, shape=(60, 40, 3)):
    return np.full(shape, value, np.uint8)


def test_row_layout_and_border_colours():
    row = ranked_list_row(_crop(10), [_crop(50), _crop(90, (30, 80, 3)), _crop(120)],
                          correct=[True, False, None], tile_size=(64, 48), border=3, gap=10)
    assert row.shape == (64, 4 * 48 + 10, 3) and row.dtype == np.uint8
    first_match_x = 48 + 10
    for k, color in enumerate([GREEN, RED, GREY]):
        assert tuple(row[1, first_match_x + k * 48 + 1]) == color  # top-left border pixel
    assert (row[:, 48:58] == 255).all()  # white gap after the query


def test_row_requires_one_flag_per_match():
    with pytest.raises(ValueError, match="one entry per match"):
        ranked_list_row(_crop(0), [_crop(1), _crop(2)], correct=[True])


def test_stack_rows_pads_to_the_widest():
    a, b = np.zeros((10, 30, 3), np.uint8), np.zeros((10, 50, 3), np.uint8)
    out = stack_rows([a, b], gap=2)
    assert out.shape == (24, 50, 3) and (out[:10, 30:] == 255).all()


def test_weights_heatmap_colours_by_weight_and_outlines_each_rows_heaviest():
    weights = np.array([[0.1, 0.7, 0.1, 0.1], [0.25, 0.25, 0.4, 0.1]])
    image = weights_heatmap(weights, ["p1", "p2"], ["N", "E", "G", "A"], "epoch 3",
                            cell=(20, 40))
    assert image.dtype == np.uint8 and image.ndim == 3
    left, top = 70, 20 + 22
    heaviest = image[top + 1, left + 40 + 10]  # top edge of row 0's outline, column E
    lightest = image[top + 10, left + 2 * 40 + 3]  # row 0, column G (0.1), off the text
    assert tuple(heaviest) == (0, 0, 255)  # the red outline of the row's argmax
    assert int(lightest.sum()) != int(image[top + 20 + 10, left + 2 * 40 + 3].sum())  # 0.1 vs 0.4


def test_weights_heatmap_needs_one_label_per_row_and_column():
    with pytest.raises(ValueError, match="one label per row and column"):
        weights_heatmap(np.zeros((2, 4)), ["only one"], ["N", "E", "G", "A"])
