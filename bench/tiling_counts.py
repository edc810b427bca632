"""Counts of big slides analysed whole and in tiles: what tiling changes, summed over mosaics.

Run: ``.venv/bin/python bench/tiling_counts.py [--mosaics 6] [--tile 1000]``. Each mosaic is
16 consecutive BCCD slides in a 4 x 4 block (2560 x 1920), so tile seams cut real cells;
the default pipeline counts it once whole and once in ``--tile`` px tiles. A cell on a seam
counted twice or dropped shows as a difference; tests/integration/test_analysis_dense.py
bounds it per mosaic and quotes this program's totals.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mosaics", type=int, default=6)
    parser.add_argument("--tile", type=int, default=1000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bloodcount.analysis import Analyzer
    from bloodcount.config import load_settings

    data = Path(os.environ.get("BLOODCOUNT_DATA", ROOT.parent / "shared" / "data"))
    files = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))[: 16 * args.mosaics]
    if len(files) < 16 * args.mosaics:
        sys.exit(f"need {16 * args.mosaics} BCCD slides under {data}, found {len(files)}")
    whole_an = Analyzer(load_settings({}))
    tiled_an = Analyzer(load_settings({}, tile_size=args.tile))
    totals = {"whole": {}, "tiled": {}}
    for m in range(args.mosaics):
        images = [
            cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[16 * m : 16 * m + 16]
        ]
        mosaic = np.vstack([np.hstack(images[i : i + 4]) for i in range(0, 16, 4)])
        whole = whole_an.analyze_image(mosaic, f"m{m}").counts
        tiled = tiled_an.analyze_image(mosaic, f"m{m}").counts
        print(f"mosaic {m}: whole {whole} tiled {tiled}", flush=True)
        for key, counts in (("whole", whole), ("tiled", tiled)):
            for label, n in counts.items():
                totals[key][label] = totals[key].get(label, 0) + n
    model = whole_an.model_info
    print(f"model {model.get('name')} {model.get('version')}, tile {args.tile} px")
    for key, counts in totals.items():
        print(f"{key}: " + "/".join(str(counts[k]) for k in ("RBC", "WBC", "Platelets")))


if __name__ == "__main__":
    main()
