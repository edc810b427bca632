"""IoU, NMS and the tile plan whose cores count a seam cell exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcount.vision.decode import SlideError
from bloodcount.vision.geometry import in_counting_frame, iou_matrix, nms, touches_border
from bloodcount.vision.tiles import plan_tiles


def test_iou_of_known_boxes():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]
    assert np.allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    assert iou_matrix([], b).shape == (0, 3)


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]
    assert list(nms(boxes, [0.5, 0.9, 0.7], 0.5)) == [1, 2]


def test_touches_border():
    assert list(touches_border([[0, 5, 10, 10], [5, 5, 10, 10], [5, 5, 100, 10]], 100, 50)) == [
        True,
        False,
        True,
    ]


def test_the_counting_frame_accepts_the_top_and_left_edges_and_excludes_the_others():
    boxes = [
        [0, 0, 10, 10],  # top-left corner: counted
        [40, 20, 60, 30],  # inside
        [90, 20, 100, 30],  # cut by the right edge
        [40, 45, 60, 50],  # cut by the bottom edge
        [0, 40, 10, 49.5],  # left edge, within a pixel of the bottom: excluded
    ]
    assert list(in_counting_frame(boxes, 100, 50)) == [True, True, False, False, False]
    # Two slides side by side: a cell on their seam is counted in exactly one of them.
    left, right = [[90, 20, 100, 30]], [[0, 20, 10, 30]]
    assert in_counting_frame(left, 100, 50)[0] + in_counting_frame(right, 100, 50)[0] == 1


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap"),
    [(640, 480, 2048, 200), (5000, 3100, 1024, 200), (2049, 2048, 2048, 150)],
)
def test_tile_cores_partition_the_image(width, height, tile, overlap):
    tiles = plan_tiles(width, height, tile, overlap)
    rng = np.random.default_rng(1)
    for x, y in zip(rng.uniform(0, width, 500), rng.uniform(0, height, 500), strict=True):
        assert sum(t.owns(x, y) for t in tiles) == 1
    for t in tiles:
        assert t.x1 - t.x0 <= max(tile, 2 * overlap + 1) and t.x1 <= width and t.y1 <= height
        # A core keeps half an overlap away from the tile's inner edges, so a cell of
        # diameter <= overlap / 2 centred in it lies wholly inside the tile.
        c0, r0, c1, r1 = t.core
        assert c0 == 0 or c0 - t.x0 >= overlap / 2 - 1
        assert c1 == width or t.x1 - c1 >= overlap / 2 - 1


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap"),
    [(2560, 1920, 700, 60), (5000, 3100, 1024, 200), (2049, 2048, 2048, 150), (1000, 700, 990, 40)],
)
def test_aligned_tiles_start_on_the_grid_and_still_partition(width, height, tile, overlap):
    tiles = plan_tiles(width, height, tile, overlap, align=32)
    assert all(t.x0 % 32 == 0 and t.y0 % 32 == 0 for t in tiles)
    assert max(t.x1 for t in tiles) == width and max(t.y1 for t in tiles) == height
    rng = np.random.default_rng(2)
    for x, y in zip(rng.uniform(0, width, 500), rng.uniform(0, height, 500), strict=True):
        assert sum(t.owns(x, y) for t in tiles) == 1
    for t in tiles:
        assert t.x1 - t.x0 <= max(tile, 2 * overlap + 1) + 31
        c0, r0, c1, r1 = t.core
        assert c0 == 0 or c0 - t.x0 >= overlap / 2 - 1
        assert c1 == width or t.x1 - c1 >= overlap / 2 - 1
        assert r0 == 0 or r0 - t.y0 >= overlap / 2 - 1
        assert r1 == height or t.y1 - r1 >= overlap / 2 - 1


def test_huge_tile_count_is_a_slide_error():
    with pytest.raises(SlideError, match="tiles"):
        plan_tiles(100_000, 100_000, 64, 10)
