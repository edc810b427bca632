"""Overlapping tiles for slides larger than one tile, and the rule that counts a seam cell once.

Neighbouring tiles overlap by at least two cell diameters, and each tile owns only its
*core*: the part of the overlap nearer to it. A cell is kept by the one tile whose core
holds its centre, so a cell on a seam is counted exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from bloodcount.vision.decode import SlideError

MAX_TILES = 4096


@dataclass(frozen=True)
class Tile:
    """A window ``[x0, x1) x [y0, y1)`` of the slide and the core it owns."""

    x0: int
    y0: int
    x1: int
    y1: int
    core: tuple[float, float, float, float]

    def owns(self, cx: float, cy: float) -> bool:
        """True if the point (slide coordinates) lies in this tile's core."""
        c0, r0, c1, r1 = self.core
        return c0 <= cx < c1 and r0 <= cy < r1


def _starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Tile starts, each a multiple of ``align``; the last tile ends at ``length``."""
    if length <= tile:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    last = (length - tile) // align * align  # a tile starting here reaches the end (see _extent)
    starts = list(range(0, last, stride))
    starts.append(last)
    return starts


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    """Split each overlap at its middle so the cores partition [0, length)."""
    cores = []
    for i, s in enumerate(starts):
        lo = 0.0 if i == 0 else (s + starts[i - 1] + tile) / 2
        hi = float(length) if i == len(starts) - 1 else (starts[i + 1] + s + tile) / 2
        cores.append((lo, hi))
    return cores


def plan_tiles(width: int, height: int, tile_size: int, overlap: int, align: int = 1) -> list[Tile]:
    """Tiles covering the slide; one tile when it fits. Raises SlideError if too many are needed.

    With ``align`` > 1 every tile starts on a multiple of it, so a network that downsamples
    by ``align`` sees each tile on the same pixel grid as the whole slide; the last tile of
    a row or column may then be up to ``align - 1`` pixels wider than ``tile_size``.
    """
    overlap = max(0, int(overlap))
    align = max(1, int(align))
    tile = max(int(tile_size), 2 * overlap + 1)
    xs, ys = _starts(width, tile, overlap, align), _starts(height, tile, overlap, align)
    if len(xs) * len(ys) > MAX_TILES:
        raise SlideError(
            f"image {width}x{height} would need {len(xs) * len(ys):,} tiles of {tile} px "
            f"(limit {MAX_TILES}): raise BLOODCOUNT_TILE_SIZE or reduce the image"
        )
    xcores, ycores = _cores(xs, tile, width), _cores(ys, tile, height)
    return [
        Tile(
            x,
            y,
            _extent(x, xs, tile, width),
            _extent(y, ys, tile, height),
            (xc[0], yc[0], xc[1], yc[1]),
        )
        for y, yc in zip(ys, ycores, strict=True)
        for x, xc in zip(xs, xcores, strict=True)
    ]


def _extent(start: int, starts: list[int], tile: int, length: int) -> int:
    """Where a tile ends: ``tile`` later, or at the slide's end for the last one."""
    return length if start == starts[-1] else min(start + tile, length)
