"""The study's classifier: MobileNetV2 base -> GAP -> Dense 128 ReLU -> Dropout 0.5 -> softmax.

Preprocessing (0..255 -> -1..1) is a layer inside the model, so callers feed raw RGB crops.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
FINE_TUNE_LAYERS = 30


def default_weights_path() -> Path:
    """``$BLOODCOUNT_WEIGHTS``, else ``../shared/weights/<file>`` beside the repository."""
    env = os.environ.get("BLOODCOUNT_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "weights" / WEIGHTS_FILE


def build_model(
    input_size: int, alpha: float, n_classes: int, weights: str | Path | None, seed: int = 0
):
    """(model, base, features, head): ``features`` maps crops to pooled base features and
    ``head`` maps those to probabilities, sharing layers with ``model``."""
    import keras

    keras.utils.set_random_seed(seed)
    if weights is not None and str(weights) != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(
            f"MobileNetV2 weights not found at {weights}: set BLOODCOUNT_WEIGHTS"
        )
    base = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3),
        alpha=alpha,
        include_top=False,
        weights=None if weights is None else str(weights),
    )
    base.trainable = False
    inputs = keras.Input((input_size, input_size, 3), name="crops_rgb_0_255")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    # training=False keeps BatchNorm statistics frozen even while fine-tuning.
    x = base(x, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    features = keras.Model(inputs, pooled, name="features")
    head = keras.Sequential(
        [
            keras.Input((pooled.shape[-1],)),
            keras.layers.Dense(128, activation="relu", name="fc128"),
            keras.layers.Dropout(0.5, name="dropout", seed=seed),
            keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
        ],
        name="head",
    )
    model = keras.Model(inputs, head(pooled), name="bloodcount_mobilenetv2")
    return model, base, features, head


def unfreeze_top(base, n_layers: int = FINE_TUNE_LAYERS) -> None:
    """Make the last ``n_layers`` of the base trainable (phase 2 of the study)."""
    import keras

    base.trainable = True
    for i, layer in enumerate(base.layers):
        # A frozen BatchNorm runs in inference mode in Keras 3; a trainable one would switch
        # to batch statistics during fit, whatever training= the base was called with.
        if i < len(base.layers) - n_layers or isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
