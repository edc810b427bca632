"""bench_training.py replaces only its own section of RESULTS.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_training", ROOT / "bench/bench_training.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_section_is_replaced_and_others_kept(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Analysis\nkeep me\n")
    bench.write_section(bench.HEADING + "\nfirst\n", path)
    bench.write_section(bench.HEADING + "\nsecond\n", path)
    text = path.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count(bench.HEADING) == 1
    path.write_text(text + "\n## Later section\nalso kept\n")
    bench.write_section(bench.HEADING + "\nthird\n", path)
    text = path.read_text()
    assert "also kept" in text and "keep me" in text and "third" in text and "second" not in text
