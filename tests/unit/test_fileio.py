"""Atomic writes (mixer.records.atomic): all or nothing, never a temporary file left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixer.records.atomic import atomic_write, atomic_write_json, atomic_write_text


def test_writes_and_creates_the_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "table.csv"
    assert atomic_write_text(path, "a,b\n1,2\n") == path
    assert path.read_text() == "a,b\n1,2\n"
    atomic_write_json(path.with_name("data.json"), {"x": [1, 2]}, indent=1)
    assert json.loads(path.with_name("data.json").read_text()) == {"x": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.json", "table.csv"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half of the new")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError, match="killed while writing"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_the_temporary_file_keeps_the_suffix(tmp_path):
    """np.savez appends .npz to a name without it: the rename must still find the file."""
    path = tmp_path / "train.npz"
    atomic_write(path, lambda tmp: np.savez(tmp, X=np.arange(3)))
    with np.load(path) as data:
        assert data["X"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["train.npz"]
