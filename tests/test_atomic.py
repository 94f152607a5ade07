"""The one atomic-write helper: old file or new file, never half of one, never a temp left."""

from __future__ import annotations

import os
import stat

import pytest

from xmodal.atomic import atomic_write, write_atomically


def test_a_write_replaces_the_file_with_the_umasks_permissions(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    old_umask = os.umask(0o022)
    try:
        write_atomically(path, b"new")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.bin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # like open(), not mkstemp's 0600


def test_a_write_that_fails_midway_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "card.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w", encoding="utf-8") as f:
        f.write("half of the new")
        raise RuntimeError("killed midway")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["card.json"]
