"""Heatmap peak decoding: synthetic network outputs in, boxes, classes and probabilities out."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcount.vision.canonical import PAD_MULTIPLE, plasma_colour, to_canonical
from bloodcount.vision.dense_detector import DenseDetector, decode_peaks

THRESHOLDS = np.array([0.3, 0.3, 0.3], np.float32)


def _output(h: int = 20, w: int = 24) -> np.ndarray:
    return np.zeros((h, w, 7), np.float32)


def _cell(
    out: np.ndarray, x: int, y: int, cls: int, peak: float, size=(2.0, 2.0), offset=(0.5, 0.5)
) -> None:
    ys, xs = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    g = peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 0.8**2))
    out[..., cls] = np.maximum(out[..., cls], g)
    out[y, x, 3:5] = size
    out[y, x, 5:7] = offset


def test_one_peak_gives_one_box_in_input_pixels():
    out = _output()
    _cell(out, 10, 5, cls=1, peak=0.9, size=(3.0, 2.0), offset=(0.25, 0.75))
    peaks = decode_peaks(out, THRESHOLDS, stride=4, size_unit=16)
    assert len(peaks.boxes) == 1 and peaks.labels.tolist() == [1]
    cx, cy = (10 + 0.25) * 4, (5 + 0.75) * 4
    np.testing.assert_allclose(peaks.boxes[0], [cx - 24, cy - 16, cx + 24, cy + 16], atol=1e-4)
    assert peaks.scores[0] == pytest.approx(0.9, abs=1e-6)


def test_touching_cells_two_cells_apart_are_both_found():
    out = _output()
    _cell(out, 6, 8, cls=0, peak=0.8)
    _cell(out, 8, 8, cls=0, peak=0.7)
    peaks = decode_peaks(out, THRESHOLDS)
    assert len(peaks.boxes) == 2
    assert peaks.scores.tolist() == sorted(peaks.scores.tolist(), reverse=True)


def test_per_class_thresholds_and_one_detection_per_place():
    out = _output()
    _cell(out, 4, 4, cls=2, peak=0.25)  # a faint platelet
    _cell(out, 15, 12, cls=0, peak=0.6)
    out[12, 15, 1] = 0.3  # the WBC map also lights up under the red cell
    assert decode_peaks(out, THRESHOLDS).labels.tolist() == [0]
    low_platelets = np.array([0.3, 0.3, 0.2], np.float32)
    peaks = decode_peaks(out, low_platelets)
    assert sorted(peaks.labels.tolist()) == [0, 2]
    red = peaks.probabilities[peaks.labels == 0][0]
    assert red.sum() == pytest.approx(1.0) and red[0] == pytest.approx(0.6 / 0.9, abs=1e-5)


def test_empty_heatmap_gives_no_cells():
    peaks = decode_peaks(_output(), THRESHOLDS)
    assert (
        peaks.boxes.shape == (0, 4)
        and len(peaks.labels) == 0
        and peaks.probabilities.shape == (0, 3)
    )


def test_canonical_image_is_padded_to_the_network_multiple_with_glass():
    image = np.full((100, 150, 3), (230, 220, 210), np.uint8)
    image[40:60, 40:60] = (150, 60, 90)
    canon = to_canonical(image, radius=8.0)
    h, w = canon.image.shape[:2]
    assert h % PAD_MULTIPLE == 0 and w % PAD_MULTIPLE == 0
    assert canon.factor == pytest.approx(2.0) and canon.size == (300, 200)
    assert tuple(canon.image[-1, -1]) == plasma_colour(image) == (230, 220, 210)


class _OneCellNet(DenseDetector):
    """A stand-in network: one red-cell peak at the centre of the dark pixels, exact offsets."""

    def _run(self, image: np.ndarray, member: int = 0) -> np.ndarray:
        out = np.zeros((image.shape[0] // 4, image.shape[1] // 4, 7), np.float32)
        ys, xs = np.nonzero(image[..., 0] < 100)
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5  # pixel centres, in continuous coordinates
        i, j = int(cy / 4), int(cx / 4)
        out[i, j] = (0.9, 0.05, 0.05, 1.0, 1.0, cx / 4 - j, cy / 4 - i)
        return out


def _stand_in_card(flip_average: bool) -> dict:
    return {
        "classes": ["RBC", "WBC", "Platelets"],
        "stride": 4,
        "size_unit": 16.0,
        "canonical_radius": 16.0,
        "thresholds": {"RBC": 0.5, "WBC": 0.5, "Platelets": 0.5},
        "flip_average": flip_average,
    }


@pytest.mark.parametrize("flip_average", [False, True])
def test_mirror_averaging_keeps_the_cell_where_it_is(tmp_path, flip_average):
    (tmp_path / "model.tflite").write_bytes(b"unused by the stand-in")
    card = _stand_in_card(flip_average)
    net = _OneCellNet(tmp_path / "model.tflite", card)
    image = np.full((32, 64, 3), 230, np.uint8)
    image[9:12, 19:24] = 50  # centre (21.5, 10.5): off the 4-px grid in both directions
    peaks = net.find(image)
    assert len(peaks.boxes) == 1 and peaks.labels.tolist() == [0]
    np.testing.assert_allclose(peaks.boxes[0], [13.5, 2.5, 29.5, 18.5], atol=1e-4)


class _TwoNets(DenseDetector):
    """Stand-in members: each puts its own constant on every output channel."""

    def _run(self, image: np.ndarray, member: int = 0) -> np.ndarray:
        out = np.zeros((image.shape[0] // 4, image.shape[1] // 4, 7), np.float32)
        out[...] = (0.2, 0.6)[member]
        return out


@pytest.mark.parametrize("flip_average", [False, True])
def test_an_ensemble_predicts_the_mean_of_its_members(tmp_path, flip_average):
    (tmp_path / "model.tflite").write_bytes(b"first")
    (tmp_path / "member.tflite").write_bytes(b"second")
    card = _stand_in_card(flip_average)
    nets = _TwoNets(tmp_path / "model.tflite", card, member_paths=[tmp_path / "member.tflite"])
    out = nets.predict(np.zeros((32, 64, 3), np.uint8))
    assert out.shape == (8, 16, 7)
    np.testing.assert_allclose(out[..., :5], 0.4, atol=1e-6)
    # The x offset of a mirror pass d is 1 - d: (0.2 + 0.8) / 2 and (0.6 + 0.4) / 2 average to 0.5.
    np.testing.assert_allclose(out[..., 5], 0.5 if flip_average else 0.4, atol=1e-6)
    np.testing.assert_allclose(out[..., 6], 0.4, atol=1e-6)


def test_a_large_slide_is_measured_at_slide_resolution(monkeypatch):
    """The radius of a big mosaic is estimated on slide-sized windows, not a tiny probe."""
    import bloodcount.vision.canonical as canonical

    seen = []
    monkeypatch.setattr(
        canonical, "estimate_cell_radius", lambda im: seen.append(im.shape[:2]) or 10.0
    )
    assert canonical.estimate_slide_radius(np.zeros((2000, 3000, 3), np.uint8)) == 10.0
    assert seen == [(480, 640)] * 5
    seen.clear()
    canonical.estimate_slide_radius(np.zeros((480, 640, 3), np.uint8))
    assert seen == [(480, 640)]


def test_overlap_suppression_keeps_the_stronger_of_two_boxes_on_one_cell():
    from bloodcount.vision.dense_detector import suppress_overlaps

    boxes = np.array(
        [
            [10, 10, 50, 50],  # a cell
            [12, 11, 51, 52],  # a second, weaker peak on the same cell (IoU ~0.86)
            [45, 10, 85, 50],  # its touching neighbour (IoU ~0.06): kept
            [200, 200, 240, 240],
        ],
        float,
    )
    scores = np.array([0.6, 0.9, 0.5, 0.4])
    assert suppress_overlaps(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert suppress_overlaps(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]
    assert suppress_overlaps(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
