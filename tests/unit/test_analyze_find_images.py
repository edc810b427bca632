"""Which files ``bloodcount analyze`` takes from the folders and files it is given."""

from __future__ import annotations

import pytest

from bloodcount.commands.analyze import find_images


def test_folders_are_searched_recursively_by_suffix_skipping_hidden_files(tmp_path):
    for name in ("b.JPG", "a/c.tiff", "a/d.png", "notes.txt", "._b.JPG", ".cache/e.jpg"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found = find_images([str(tmp_path)])
    assert found == [str(tmp_path / n) for n in ("a/c.tiff", "a/d.png", "b.JPG")]


def test_a_file_named_explicitly_is_taken_whatever_its_name(tmp_path):
    hidden = tmp_path / ".scan.dat"
    hidden.write_bytes(b"")
    assert find_images([str(hidden)]) == [str(hidden)]
    with pytest.raises(FileNotFoundError):
        find_images([str(tmp_path / "missing.jpg")])
