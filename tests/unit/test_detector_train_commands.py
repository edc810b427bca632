"""A card's "commands" must retrain its model: the flags of every training option; for a
run fine-tuned from a release, the recovery of that release's weights first; for a weight
average, every run and then the average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.detector.ship import _train_commands
from training.detector.soup import soup_log


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


def _fine_tune_log(seed: int) -> dict:
    return dict(
        steps=6000,
        batch=16,
        lr=2e-4,
        seed=seed,
        freeze_bn=True,
        init="var/recovered-1.6.0/model.weights.h5",
        init_recovered={"from": "m.tflite", "sha256": "ab" * 32, "version": "1.6.0"},
        seconds=900.0,
        log=[{"step": 6000, "focal": 0.2}],
    )


def _runs(tmp_path, logs: list[dict]) -> list[Path]:
    runs = []
    for i, log in enumerate(logs):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "train_log.json").write_text(json.dumps(log))
        runs.append(run)
    return runs


def test_a_weight_average_recovers_its_start_once_trains_each_run_then_averages(tmp_path):
    runs = _runs(tmp_path, [_fine_tune_log(3), _fine_tune_log(4)])
    log = soup_log(runs)
    assert log["seconds"] == 1800.0 and "log" not in log
    assert [m["final_losses"]["focal"] for m in log["soup_of"]] == [0.2, 0.2]
    recover, train3, train4, average = _train_commands(log, Path("var/cpu/soup"))
    assert recover.startswith(".venv/bin/python -m training.detector.recover ")
    assert "--seed 3 " in train3 and train3.endswith(f"--out {runs[0]}")
    assert "--seed 4 " in train4 and train4.endswith(f"--out {runs[1]}")
    assert average == (
        f".venv/bin/python -m training.detector.soup --run {runs[0]} --run {runs[1]} "
        "--out var/cpu/soup"
    )


@pytest.mark.parametrize("other_init", [None, "var/other/model.weights.h5"])
def test_runs_from_different_starts_are_not_averaged(tmp_path, other_init):
    other = {**_fine_tune_log(4), "init": other_init}
    with pytest.raises(ValueError, match="one --init") as caught:
        soup_log(_runs(tmp_path, [_fine_tune_log(3), other]))
    assert str(other_init) in str(caught.value)  # names what each run started from
