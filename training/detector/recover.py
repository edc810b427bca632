"""Keras weights back from a shipped detector's ``model.tflite``, so it can be fine-tuned.

``python -m training.detector.recover [--tflite FILE] --out DIR`` (by default the shipped
``bloodcount/models/detector/model.tflite``) writes ``DIR/model.weights.h5`` for :func:`training.detector.model.build_detector`, then
checks that the Keras model and the LiteRT file give the same output on a real slide.

Why: a shipped release keeps only its LiteRT file, and retraining the recipe from ImageNet
takes 24000 steps (6 minutes on a lent GPU, 1-5 hours on 2 CPU cores, depending on the VM).
Starting from the release instead needs a few thousand steps.

The converter folded every BatchNorm into the convolution before it: a kernel scaled per
channel and a bias. Each BatchNorm is therefore recovered as the identity plus that bias
(gamma 1, mean 0, variance 1 - epsilon, beta = the bias), which is exact in inference mode
only. Fine-tune recovered weights with ``train --freeze-bn``: in training mode a BatchNorm
would normalise by the batch's statistics instead and the network would not be the release.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

_CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D"}


def _fused_ops(tflite_path: Path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(filter, bias, output tensor name) of every convolution in the file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in _CONV_OPS:
            _, kernel, bias = op["inputs"][:3]
            out.append(
                (
                    interpreter.get_tensor(kernel),
                    interpreter.get_tensor(bias),
                    tensors[op["outputs"][0]]["name"],
                )
            )
    return out


def _mentions(fused_name: str, layer_name: str) -> bool:
    # The converter names a fused op after every layer in it, each as "<layer>_1/<op>".
    return f"/{layer_name}_1/" in fused_name


def recover_weights(model, tflite_path: Path) -> int:
    """Set ``model``'s weights from the file; returns the number of convolutions set."""
    from keras import layers

    from training.detector.model import every_layer

    ops = _fused_ops(tflite_path)
    all_layers = list(every_layer(model))
    norms = [layer for layer in all_layers if isinstance(layer, layers.BatchNormalization)]
    convs = [
        layer for layer in all_layers if isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D)
    ]
    used_norms = set()
    for conv in convs:
        found = [op for op in ops if _mentions(op[2], conv.name)]
        if len(found) != 1:
            raise ValueError(f"{conv.name}: {len(found)} convolutions in {tflite_path} name it")
        kernel, bias, fused_name = found[0]
        if isinstance(conv, layers.DepthwiseConv2D):
            # LiteRT (1, kh, kw, channels) -> Keras (kh, kw, channels, multiplier 1)
            kernel = kernel[0][..., None]
        else:
            # LiteRT (out, kh, kw, in) -> Keras (kh, kw, in, out)
            kernel = kernel.transpose(1, 2, 3, 0)
        norm = [n for n in norms if _mentions(fused_name, n.name)]
        if conv.use_bias:
            if norm:
                raise ValueError(f"{conv.name} has a bias and a BatchNorm: not this architecture")
            conv.set_weights([kernel, bias])
            continue
        if len(norm) != 1:
            raise ValueError(f"{conv.name}: no single BatchNorm folded into it in {tflite_path}")
        (bn,) = norm
        conv.set_weights([kernel])
        ones = np.ones_like(bias)
        bn.set_weights([ones, bias, np.zeros_like(bias), ones - bn.epsilon])
        used_norms.add(bn.name)
    missing = sorted({n.name for n in norms} - used_norms)
    if missing:
        raise ValueError(f"BatchNorm layers without a convolution in {tflite_path}: {missing}")
    return len(convs)


def largest_difference(model, tflite_path: Path, image: np.ndarray) -> float:
    """Max |Keras - LiteRT| over the output of one RGB uint8 image (H, W multiples of 32)."""
    from ai_edge_litert.interpreter import Interpreter

    batch = image[None].astype(np.float32)
    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], batch.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    keras_out = np.asarray(model(batch, training=False))
    return float(np.abs(lite - keras_out).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tflite", type=Path, default=Path("bloodcount/models/detector/model.tflite")
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest output difference accepted"
    )
    args = parser.parse_args(argv)

    from training.detector.data import load_slide, txl_records
    from training.detector.model import build_detector

    tflite = args.tflite
    model, _ = build_detector(None)
    n = recover_weights(model, tflite)
    # One real validation slide, cut to the network's 32 px grid.
    image = load_slide(txl_records("val")[0]).image
    h, w = (s // 32 * 32 for s in image.shape[:2])
    diff = largest_difference(model, tflite, np.ascontiguousarray(image[:h, :w]))
    print(f"{n} convolutions recovered; largest output difference {diff:.2e} on a {w}x{h} slide")
    if diff > args.tolerance:
        raise SystemExit(f"the recovered network differs from {tflite} by {diff:.2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_weights(args.out / "model.weights.h5")
    card_file = tflite.parent / "card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    (args.out / "recovered.json").write_text(
        json.dumps(
            {
                "from": str(tflite),
                "sha256": hashlib.sha256(tflite.read_bytes()).hexdigest(),
                "version": card.get("version"),
                "largest_output_difference": diff,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out / 'model.weights.h5'}")


if __name__ == "__main__":
    main()
