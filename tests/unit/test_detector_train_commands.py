"""A card's "commands" must retrain its model: the flags of every training option, and, for a
run fine-tuned from a release, the recovery of that release's weights first."""

from __future__ import annotations

from pathlib import Path

from training.detector.ship import _train_commands


def test_a_fine_tuned_release_is_recovered_first_then_trained_with_frozen_batchnorms():
    log = dict(
        steps=6000,
        batch=16,
        lr=2e-4,
        seed=3,
        degrade=0.3,
        freeze_bn=True,
        init="var/recovered-1.6.0/model.weights.h5",
        init_recovered={
            "from": "bloodcount/models/detector/model.tflite",
            "sha256": "582111294e128298f1b8121a8f511d5cc1fa5a36bb436610ec36520e1d9b0378",
            "version": "1.6.0",
        },
    )
    recover, train = _train_commands(log, Path("var/cpu/ft3"))
    assert recover.startswith(
        ".venv/bin/python -m training.detector.recover "
        "--tflite bloodcount/models/detector/model.tflite --out var/recovered-1.6.0"
    )
    assert "release 1.6.0 (sha256 582111294e12)" in recover
    assert train == (
        "nice -n 10 .venv/bin/python -m training.detector.train --steps 6000 --seed 3 "
        "--lr 0.0002 --degrade 0.3 --freeze-bn --init var/recovered-1.6.0/model.weights.h5 "
        "--out var/cpu/ft3"
    )


def test_a_run_from_imagenet_is_one_command():
    log = dict(steps=24000, batch=16, lr=2e-3, seed=2)
    assert _train_commands(log, Path("var/cpu/b2")) == [
        "nice -n 10 .venv/bin/python -m training.detector.train --steps 24000 --seed 2 "
        "--out var/cpu/b2"
    ]
