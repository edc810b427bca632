"""Tune the detector's per-class thresholds on the VALIDATION side and ship it with its card.

``python -m training.detector.ship --run var/detector --out bloodcount/models/detector
[--test-eval eval-test.json]`` copies ``model.tflite``, picks each class's peak threshold
for the best validation F1 (IoU 0.5, TXL-PBC labels), and writes ``card.json`` and
``card.md``. Test-side figures come only from a ``bloodcount evaluate --split test`` run of
the shipped model (``--test-eval``), never from tuning. ``--member DIR`` (repeatable) adds
another network, from a training run or a shipped detector, whose output is averaged with
``--run``'s: an ensemble, tuned and carded like any detector. Separate files cost one LiteRT
interpreter per network and slide shape; runs whose Keras weights exist are cheaper as one
graph (``export --ensemble-with``), so ``--member`` is for networks kept only as LiteRT
files, such as a shipped detector's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

from bloodcount.evaluation import macro_f1
from bloodcount.vision import CLASSES
from bloodcount.vision.canonical import CANONICAL_RADIUS, CANONICAL_RBC_SIZE, PAD_MULTIPLE

NAME = "bloodcount-dense-detector"
GRID = np.round(np.arange(0.05, 0.901, 0.025), 3)


def _card_base(
    model_path: Path,
    thresholds: dict[str, float],
    flip_average: bool = False,
    inference_scale: float = 1.0,
    version: str = "1.0.0",
    nms_iou: float | None = None,
) -> dict:
    from training.detector.data import SIZE_UNIT, STRIDE
    from training.detector.export import sha256_file

    return {
        "name": NAME,
        "version": version,
        "sha256": sha256_file(model_path),
        "classes": list(CLASSES),
        "stride": STRIDE,
        "size_unit": SIZE_UNIT,
        "canonical_radius": CANONICAL_RADIUS,
        "canonical_rbc_size": round(CANONICAL_RBC_SIZE, 2),
        "pad_multiple": PAD_MULTIPLE,
        "flip_average": flip_average,
        "inference_scale": inference_scale,
        "nms_iou": nms_iou,
        "thresholds": thresholds,
    }


def _train_commands(train_log: dict, run: Path) -> list[str]:
    """The command(s) that retrain this run from its log: its backend, batch and workers."""
    if "ensemble_of" in train_log:  # one graph made of several runs (export --ensemble-with)
        runs = [m["run"] for m in train_log["ensemble_of"]]
        return [
            *(c for m in train_log["ensemble_of"] for c in _train_commands(m, Path(m["run"]))),
            f".venv/bin/python -m training.detector.export --run {runs[0]}"
            + "".join(f" --ensemble-with {r}" for r in runs[1:])
            + f" --out {run}",
        ]
    if "soup_of" in train_log:  # one network, the mean of several runs' weights (soup)
        runs = [m["run"] for m in train_log["soup_of"]]
        # The runs share their start, so its recovery is listed once (dict keeps the order).
        members = (c for m in train_log["soup_of"] for c in _train_commands(m, Path(m["run"])))
        return [
            *dict.fromkeys(members),
            ".venv/bin/python -m training.detector.soup"
            + "".join(f" --run {r}" for r in runs)
            + f" --out {run}",
        ]
    backend = train_log.get("backend", "tensorflow")
    flags = f"--steps {train_log['steps']}"
    if train_log.get("seed"):
        flags += f" --seed {train_log['seed']}"
    if train_log["batch"] != 16:
        flags += f" --batch {train_log['batch']}"
    if train_log["lr"] != 2e-3:
        flags += f" --lr {train_log['lr']:g}"
    if train_log.get("workers"):
        flags += f" --workers {train_log['workers']}"
    if train_log.get("ema"):
        flags += f" --ema {train_log['ema']:g}"
    if train_log.get("platelet_focus"):
        flags += f" --platelet-focus {train_log['platelet_focus']:g}"
    if train_log.get("degrade"):
        flags += f" --degrade {train_log['degrade']:g}"
    if train_log.get("partial"):
        # The ignore file is made from a shipped detector; its card names the command.
        flags += f" --partial {train_log['partial']}"
    if train_log.get("freeze_bn"):
        flags += " --freeze-bn"
    if train_log.get("init"):
        flags += f" --init {train_log['init']}"  # that run's own card or log says how it was made
    first = []
    if train_log.get("init_recovered"):
        r = train_log["init_recovered"]
        first = [
            f".venv/bin/python -m training.detector.recover --tflite {r['from']} "
            f"--out {Path(train_log['init']).parent}  # the file of release {r['version']} "
            f"(sha256 {r['sha256'][:12]}), from git history"
        ]
    if backend == "tensorflow":
        return [
            *first,
            f"nice -n 10 .venv/bin/python -m training.detector.train {flags} --out {run}",
        ]
    # Other backends train only; the LiteRT export needs TensorFlow's converter.
    return [
        *first,
        f"KERAS_BACKEND={backend} python -m training.detector.train {flags} --no-export --out {run}",
        f".venv/bin/python -m training.detector.export --run {run}",
    ]


def _member(folder: Path) -> tuple[Path, dict]:
    """(model.tflite, how it was trained) of a training run's folder or of a shipped detector's."""
    if (folder / "train_log.json").is_file():
        log = json.loads((folder / "train_log.json").read_text())
        keys = ("steps", "batch", "crop", "lr", "seed", "backend", "device", "seconds")
        return folder / "model.tflite", {"run": str(folder), **{k: log.get(k) for k in keys}}
    card = json.loads((folder / "card.json").read_text())
    if card.get("members"):
        raise SystemExit(f"{folder} is itself an ensemble: name its networks' folders instead")
    return folder / "model.tflite", {
        "detector": f"{card['name']} {card['version']}",
        **card["training"],
    }


def _soup_lines(averaged: list[dict]) -> list[str]:
    """The card.md line saying the weights are a mean of runs (none for a single run)."""
    if not averaged:
        return []
    seeds = ", ".join(str(m.get("seed")) for m in averaged)
    return [
        f"- weights: the mean of {len(averaged)} runs fine-tuned from one start "
        f"(seeds {seeds}; `training.detector.soup`), one network"
    ]


def _ensemble_lines(members: list[dict]) -> list[str]:
    """The card.md line naming an ensemble's extra networks (none for a single network)."""
    if not members:
        return []
    named = "; ".join(
        f"`{m['file']}` (sha256 `{m['sha256'][:12]}`, {m.get('detector') or m.get('run')}, "
        f"seed {m.get('seed')})"
        for m in members
    )
    return [
        f"- ensemble: the mean output of model.tflite and {len(members)} more network(s): {named}"
    ]


def collect(
    model_path: Path,
    side: str,
    data_dir: Path | None = None,
    flip_average: bool = False,
    inference_scale: float = 1.0,
    member_paths: tuple[Path, ...] = (),
):
    """(record, Detections) for every TXL slide on ``side``, peaks kept down to the lowest threshold.

    ``member_paths``: more networks whose outputs are averaged with ``model_path``'s.
    """
    import cv2

    from bloodcount.vision.dense_detector import DenseDetector
    from bloodcount.vision.detect_dense import detect_cells_dense
    from training.detector.data import txl_records

    card = _card_base(
        model_path, {c: float(GRID[0]) for c in CLASSES}, flip_average, inference_scale
    )
    detector = DenseDetector(model_path, card, member_paths=member_paths)
    out = []
    for record in txl_records(side, data_dir):
        image = cv2.cvtColor(
            cv2.imread(str(record.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
        out.append((record, detect_cells_dense(image, detector)))
    return out


def _cells(found, thresholds: dict[str, float]) -> list[dict]:
    scores = 1.0 - found.background
    cells = []
    for box, label, probs, score in zip(
        found.boxes, found.labels, found.probabilities, scores, strict=True
    ):
        name = CLASSES[int(label)]
        if score >= thresholds[name]:
            cells.append({"label": name, "box": box.tolist(), "confidence": float(probs[label])})
    return cells


def tune(collected) -> dict[str, float]:
    """Per class, the grid threshold with the best pooled validation F1 (ties: the lower one)."""
    from bloodcount.evaluation import greedy_matches

    best = {}
    for ci, name in enumerate(CLASSES):
        rows = []
        for record, found in collected:
            sel = found.labels == ci
            truth = [b.xyxy for b in record.boxes if b.label == name]
            rows.append((found.boxes[sel], (1.0 - found.background)[sel], truth))
        f1s = []
        for t in GRID:
            tp = n_pred = n_true = 0
            for boxes, scores, truth in rows:
                keep = scores >= t
                tp += greedy_matches(boxes[keep], scores[keep], truth)
                n_pred, n_true = n_pred + int(keep.sum()), n_true + len(truth)
            f1s.append(2 * tp / max(n_pred + n_true, 1))
        best[name] = float(GRID[int(np.argmax(f1s))])
    return best


def suppressed(collected, nms_iou: float | None):
    """``collected`` with overlapping peaks suppressed as the service would (None: as is)."""
    from bloodcount.vision.dense_detector import suppress_overlaps
    from bloodcount.vision.detect import Detections

    if nms_iou is None:
        return collected
    out = []
    for record, found in collected:
        keep = suppress_overlaps(found.boxes, 1.0 - found.background, nms_iou)
        out.append(
            (
                record,
                Detections(
                    found.boxes[keep],
                    found.labels[keep],
                    found.probabilities[keep],
                    found.background[keep],
                    found.edge[keep],
                ),
            )
        )
    return out


def score(collected, thresholds: dict[str, float]) -> dict:
    """Per-source metrics (bloodcount.evaluation) of ``collected`` at ``thresholds``."""
    from bloodcount.evaluation import score_slide, summarise_by_source

    scores = [
        score_slide(
            str(r.image_path), r.source, _cells(f, thresholds), [(b.xyxy, b.label) for b in r.boxes]
        )
        for r, f in collected
    ]
    return summarise_by_source(scores)


def _table(sources: dict) -> list[str]:
    lines = [
        "| source | slides | class | count acc | MAE/slide | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, summary in sorted(sources.items()):
        for c, m in summary["classes"].items():
            acc = "" if m["count_accuracy"] is None else f"{m['count_accuracy']:.3f}"
            lines.append(
                f"| {source} | {summary['slides']} | {c} | {acc} | {m['mae_per_slide']:.2f} | "
                f"{m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("var/detector"))
    parser.add_argument("--out", type=Path, default=Path("bloodcount/models/detector"))
    parser.add_argument(
        "--member",
        type=Path,
        action="append",
        default=[],
        help="another network to average with --run's: a training run's folder or a shipped "
        "detector's (repeatable; the card lists each with its sha256)",
    )
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="average each slide's output with its mirror image's (tuned that way)",
    )
    parser.add_argument(
        "--inference-scales",
        default="1.0,1.15,1.3",
        help="candidate cell magnifications over canonical; the best on validation is kept",
    )
    parser.add_argument(
        "--nms-ious",
        default="none",
        help="candidate box-overlap suppression IoUs ('none': off); the best on validation is kept",
    )
    # Every shipped model gets its own version: results record it beside the sha256.
    parser.add_argument("--version", default="1.0.0", help="version written to the card")
    parser.add_argument(
        "--note", action="append", default=[], help="a measured finding to record in the card"
    )
    parser.add_argument(
        "--test-eval", type=Path, help="evaluation JSON of the shipped model on --split test"
    )
    args = parser.parse_args(argv)
    from training.detector.export import sha256_bytes
    from training.split import manifest_sha256

    model_path = args.run / "model.tflite"
    members = [_member(folder) for folder in args.member]
    # Read every network now: --out may be the folder a member is shipped in.
    blobs = [model_path.read_bytes(), *(p.read_bytes() for p, _ in members)]
    candidates = []
    nms_choices = [None if v.strip() == "none" else float(v) for v in args.nms_ious.split(",")]
    for k in (float(v) for v in args.inference_scales.split(",")):
        peaks = collect(
            model_path,
            "val",
            flip_average=args.flip_average,
            inference_scale=k,
            member_paths=tuple(p for p, _ in members),
        )
        for nms_iou in nms_choices:
            val = suppressed(peaks, nms_iou)
            thresholds = tune(val)
            metrics = score(val, thresholds)
            candidates.append((macro_f1(metrics), k, thresholds, metrics, nms_iou))
            print(
                f"inference scale {k}, nms {nms_iou}: validation macro F1 {candidates[-1][0]:.4f}",
                flush=True,
            )
    _, scale, thresholds, val_metrics, nms_iou = max(candidates, key=lambda c: c[0])
    train_log = json.loads((args.run / "train_log.json").read_text())
    averaged = train_log.get("soup_of")  # the runs of a weight average (training.detector.soup)
    card = _card_base(model_path, thresholds, args.flip_average, scale, args.version, nms_iou)
    card.update(
        {
            "input": "float32 [1, H, W, 3], raw RGB 0..255 (preprocessing inside the model); H and W "
            "resizable, multiples of pad_multiple",
            "output": "float32 [1, H/4, W/4, 7]: RBC/WBC/Platelets centre heatmaps (sigmoid), box w/h "
            "in size_unit px, centre offset in cells",
            "input_handling": "bloodcount.vision.canonical.to_canonical: resize so the OpenCV-estimated "
            f"red-cell radius is {CANONICAL_RADIUS} px, pad with the plasma colour",
            "backbone": "MobileNetV2 alpha 0.35, ImageNet weights (../shared/weights), stride 4/8/16 features",
            "quantized": False,
            "training": {
                "data": "TXL-PBC labels only (txl-bccd, txl-pbc, txl-raabin), train side",
                "split_manifest": "training/splits/default.json",
                "split_sha256": manifest_sha256(),
                **{
                    k: train_log[k]
                    for k in ("steps", "batch", "crop", "lr", "seed", "train_slides", "seconds")
                },
                # Logs from before these fields existed: TensorFlow on 2 shared cores.
                "backend": train_log.get("backend", "tensorflow"),
                "device": train_log.get("device", "2 shared CPU cores"),
                "workers": train_log.get("workers", 0),
                # A weight average has no losses of its own: each run's last are listed.
                "final_losses": (
                    [m["final_losses"] for m in averaged] if averaged else train_log["log"][-1]
                ),
                **(
                    {"weight_average_of_seeds": [m.get("seed") for m in averaged]}
                    if averaged
                    else {}
                ),
            },
            "thresholds_tuned_on": "validation side, best pooled F1 per class at IoU 0.5",
            "inference_scale_tuned_on": {
                "side": "validation",
                "figure": "macro F1 over source x class",
                "candidates": {f"{c[1]}/nms {c[4]}": round(c[0], 4) for c in candidates},
            },
            "metrics": {"val": val_metrics},
            "notes": args.note,
            "created": dt.date.today().isoformat(),
            "commands": [
                *_train_commands(train_log, args.run),
                f"nice -n 10 .venv/bin/python -m training.detector.ship --run {args.run} --out {args.out}"
                + "".join(f" --member {m}" for m in args.member)
                + (" --flip-average" if args.flip_average else "")
                + f" --inference-scales {args.inference_scales} --nms-ious {args.nms_ious}"
                + f" --version {args.version}"
                + (f" --test-eval {args.test_eval}" if args.test_eval else ""),
            ],
        }
    )
    if members:
        card["members"] = [
            {"file": f"member-{i}.tflite", "sha256": sha256_bytes(blob), **trained}
            for i, (blob, (_, trained)) in enumerate(zip(blobs[1:], members, strict=True), start=1)
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("member-*.tflite"):
        stale.unlink()
    (args.out / "model.tflite").write_bytes(blobs[0])
    for i, blob in enumerate(blobs[1:], start=1):
        (args.out / f"member-{i}.tflite").write_bytes(blob)
    if args.test_eval:
        ev = json.loads(args.test_eval.read_text())
        if ev["model"]["sha256"] != card["sha256"]:
            raise SystemExit(
                f"{args.test_eval} scored another model ({ev['model']['sha256'][:12]})"
            )
        # The same network with other thresholds, scale or suppression is another detector:
        # the version tells them apart, so the evaluation must come from a ship of this one.
        if ev["model"]["version"] != card["version"]:
            raise SystemExit(
                f"{args.test_eval} scored version {ev['model']['version']}, not "
                f"{card['version']}: ship to a scratch folder with --version "
                f"{card['version']}, evaluate that, then ship here"
            )
        card["metrics"]["test"] = ev["sources"]
        # The test side is scored on a scratch ship of this very version (same tuning,
        # deterministic), which this command then checks before recording its figures.
        scratch = card["commands"][-1].replace(f" --out {args.out}", " --out var/ship-scratch")
        scratch = scratch.replace(f" --test-eval {args.test_eval}", "")
        card["commands"][-1:-1] = [
            scratch,
            "BLOODCOUNT_DATA=../shared/data BLOODCOUNT_DETECTOR_PATH=var/ship-scratch "
            ".venv/bin/bloodcount evaluate --dataset ../shared/data/txl-pbc/train --format yolo "
            f"--split test --output {args.test_eval}",
        ]
    (args.out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    md = [
        f"# {NAME} {card['version']}",
        "",
        "Dense (CenterNet-style) cell detector on the MobileNetV2 alpha 0.35 backbone, run with LiteRT by",
        "`bloodcount.vision.dense_detector`. OpenCV first estimates the red-cell size and resizes the slide",
        f"so red cells have a {CANONICAL_RADIUS:g} px radius; the network predicts class-centre heatmaps,",
        "box sizes and offsets every 4 px; cells are 3x3 heatmap peaks above the per-class thresholds.",
        "",
        f"- sha256 `{card['sha256']}`",
        *_soup_lines(averaged or []),
        *_ensemble_lines(card.get("members", [])),
        f"- thresholds (tuned on validation): {thresholds}",
        f"- inference scale {scale} x canonical, flip averaging {args.flip_average}, "
        f"box-overlap suppression {'off' if nms_iou is None else f'IoU > {nms_iou}'} (chosen on validation: "
        f"macro F1 {card['inference_scale_tuned_on']['candidates']})",
        f"- trained on {card['training']['train_slides']} TXL-PBC train-side slides, "
        f"{card['training']['steps']} steps x {card['training']['batch']} crops of {card['training']['crop']} px"
        f"{' per run' if averaged else ''}, "
        f"{card['training']['seconds']:.0f} s{' in all' if averaged else ''} "
        f"on {card['training']['device']} "
        f"(Keras backend {card['training']['backend']})",
        f"- split manifest sha256 `{card['training']['split_sha256']}`",
        f"- created {card['created']}",
        "",
        "## Validation side (thresholds tuned here)",
        "",
        *_table(card["metrics"]["val"]),
        "",
    ]
    if "test" in card["metrics"]:
        md += [
            "## Test side (held out; never used for tuning)",
            "",
            *_table(card["metrics"]["test"]),
            "",
        ]
    if args.note:
        md += ["## Notes", "", *[f"- {n}" for n in args.note], ""]
    md += ["## Commands", "", *[f"    {c}" for c in card["commands"]], ""]
    (args.out / "card.md").write_text("\n".join(md))
    print(
        json.dumps(
            {
                "thresholds": thresholds,
                "val": {
                    s: {c: round(m["f1"], 3) for c, m in v["classes"].items()}
                    for s, v in card["metrics"]["val"].items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
