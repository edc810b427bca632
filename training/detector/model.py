"""The dense detector: MobileNetV2 (alpha 0.35, ImageNet) stride 4/8/16 features, a small
top-down merge, and CenterNet heads (3 sigmoid centre heatmaps; box w, h and centre offset).

One output tensor (N x H/4 x W/4 x 7): channels 0-2 are the RBC/WBC/Platelets heatmaps
(already sigmoid), 3-4 the box size in 16-px units, 5-6 the centre offset in cells.
Preprocessing (0..255 -> -1..1) is inside the model: callers feed raw RGB.
"""

from __future__ import annotations

import math
from pathlib import Path

FEATURES = (
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
)  # strides 4, 8, 16
WIDTH = 48
PRIOR = 0.1  # initial heatmap probability: CenterNet's bias init keeps early focal loss sane


def _sep(x, filters: int, name: str):
    import keras
    from keras import layers

    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def _lateral(x, filters: int, name: str):
    from keras import layers

    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def build_detector(weights: str | Path | None, alpha: float = 0.35, seed: int = 0):
    """(model, backbone): the full detector on (None, None, 3) inputs, and its frozen-BN backbone."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"MobileNetV2 weights not found at {weights}")
    base = keras.applications.MobileNetV2(
        input_shape=(None, None, 3),
        alpha=alpha,
        include_top=False,
        weights=None if weights is None else str(weights),
    )
    backbone = keras.Model(
        base.input, [base.get_layer(n).output for n in FEATURES], name="backbone"
    )
    inputs = keras.Input((None, None, 3), name="slide_rgb_0_255")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    # training=False: BatchNorm keeps ImageNet statistics while the weights fine-tune.
    c3, c4, c5 = backbone(x, training=False)
    p5 = _lateral(c5, 64, "lat16")
    p4 = layers.Add(name="merge8")(
        [_lateral(c4, 64, "lat8"), layers.UpSampling2D(2, name="up16")(p5)]
    )
    p4 = _sep(p4, WIDTH, "smooth8")
    p3 = layers.Add(name="merge4")(
        [_lateral(c3, WIDTH, "lat4"), layers.UpSampling2D(2, name="up8")(p4)]
    )
    p3 = _sep(p3, WIDTH, "smooth4")
    h = _sep(p3, WIDTH, "heat")
    heat = layers.Conv2D(
        3,
        1,
        activation="sigmoid",
        name="heatmap",
        bias_initializer=keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR)),
    )(h)
    r = _sep(p3, WIDTH, "box")
    reg = layers.Conv2D(4, 1, name="box_regression")(r)
    out = layers.Concatenate(name="detections")([heat, reg])
    return keras.Model(inputs, out, name="bloodcount_dense_detector"), backbone


def every_layer(model):
    """Every layer of ``model``, nested models (the backbone) opened."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from every_layer(layer)
        else:
            yield layer


def losses(pred, heat, reg, mask, weights=None):
    """(focal, size, offset) losses, each normalised by the number of cells in the batch.

    ``weights`` (per class and position, 0 or 1) switch the heatmap loss off where a slide's
    labels may be missing (:func:`training.detector.data.loss_weights`); labelled centres
    always count.

    Written in ``keras.ops`` so the same training code runs on any Keras backend
    (TensorFlow here; JAX where a GPU is lent, see :mod:`training.detector.train`).
    """
    from keras import ops

    p = ops.clip(pred[..., :3], 1e-4, 1 - 1e-4)
    pos = ops.cast(heat >= 1.0 - 1e-6, "float32")
    neg = 1.0 - pos
    if weights is not None:
        neg = neg * weights
    n = ops.maximum(ops.sum(mask), 1.0)
    focal = (
        -ops.sum(pos * (1 - p) ** 2 * ops.log(p) + neg * (1 - heat) ** 4 * p**2 * ops.log(1 - p))
        / n
    )
    m = mask[..., None]
    size = ops.sum(ops.abs(pred[..., 3:5] - reg[..., :2]) * m) / n
    offset = ops.sum(ops.abs(pred[..., 5:7] - reg[..., 2:]) * m) / n
    return focal, size, offset


# Keras's fit() passes one target tensor: heat (3), box regression (4), centre mask (1) and,
# where present, heatmap loss weights (3) travel packed along the channel axis.
def _unpacked(y_true, y_pred):
    weights = y_true[..., 8:11] if y_true.shape[-1] > 8 else None
    return losses(y_pred, y_true[..., :3], y_true[..., 3:7], y_true[..., 7], weights)


def packed_loss(y_true, y_pred):
    """The training objective on packed targets: focal + 0.1 size + offset."""
    focal, size, offset = _unpacked(y_true, y_pred)
    return focal + 0.1 * size + offset


def focal(y_true, y_pred):
    return _unpacked(y_true, y_pred)[0]


def size(y_true, y_pred):
    return _unpacked(y_true, y_pred)[1]


def offset(y_true, y_pred):
    return _unpacked(y_true, y_pred)[2]
