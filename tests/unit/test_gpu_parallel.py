"""training/detector/gpu_parallel.sh: runs at once, controls at a lower priority, a deadline that
stops what is still running and says so, and one tar per run to bring back.

The training itself is a stand-in here (a GPU lease is where the real one runs): a
``training.detector.train`` module in a scratch folder, which the script finds first on its
path because it runs from the folder it is started in."""

from __future__ import annotations

import subprocess
import tarfile
import time
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "training" / "detector" / "gpu_parallel.sh"

STAND_IN = """
import argparse, os, time
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--out", type=Path)
p.add_argument("--seconds", type=float)
p.add_argument("--workers")
p.add_argument("--no-export", action="store_true")
a = p.parse_args()
(a.out / "niceness").write_text(str(os.nice(0)))
print("started", flush=True)
time.sleep(a.seconds)
(a.out / "model.weights.h5").write_text("weights")
print("finished", flush=True)
"""


def test_runs_train_at_once_and_the_deadline_stops_the_slow_one(tmp_path):
    package = tmp_path / "training" / "detector"
    package.mkdir(parents=True)
    for init in (tmp_path / "training", package):
        (init / "__init__.py").write_text("")
    (package / "train.py").write_text(STAND_IN)
    out = tmp_path / "out"
    t0 = time.time()
    done = subprocess.run(
        ["bash", str(SCRIPT), "cand1 --seconds 1", "ctl1 --seconds 1", "cand2 --seconds 60"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OUT": str(out), "DEADLINE": "4"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert time.time() - t0 < 30  # stopped at the deadline, not after the slow run's 60 s
    assert "deadline: stopped what was still running" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["cand1.tar", "cand2.tar", "ctl1.tar"]

    def members(name: str) -> dict[str, bytes]:
        with tarfile.open(out / f"{name}.tar") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    fast, control, slow = members("cand1"), members("ctl1"), members("cand2")
    assert fast["cand1/model.weights.h5"] == b"weights" and "cand1/STOPPED" not in fast
    assert b"finished" in fast["cand1/train.log"]
    # Relative to the candidates: the test itself may run under nice.
    assert int(control["ctl1/niceness"]) == int(fast["cand1/niceness"]) + 5
    # The stopped run says so, and has no final weights to be mistaken for a finished run.
    assert "cand2/STOPPED" in slow and "cand2/model.weights.h5" not in slow
