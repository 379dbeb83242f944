"""Atomic writes: all or nothing, readable like any file the user creates, JSON round trip, backups."""
import os
import stat

import pytest

from voicelib import files


def test_atomic_write_leaves_nothing_on_failure_and_keeps_umask_mode(tmp_path):
    target = tmp_path / "out.json"
    files.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_write(target) as handle:
            handle.write("partial")
            raise RuntimeError("interrupted")
    assert files.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_backup_keeps_the_old_bytes(tmp_path):
    target = tmp_path / "manifest.csv"
    target.write_text("old")
    backup = files.backup_if_exists(target)
    target.write_text("new")
    assert backup.read_text() == "old" and files.backup_if_exists(tmp_path / "missing") is None


def test_read_json_names_the_file_when_broken(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json"):
        files.read_json(bad)
