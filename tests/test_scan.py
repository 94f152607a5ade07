"""Walking folders: real files, real symlinks, real odd names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xmodal.scan import display_path, is_under, scan


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def found(result) -> set[bytes]:
    return {f.path for f in result.files}


def test_walks_recursively_and_filters_by_extension_case_insensitively(tmp_path):
    wanted = [
        touch(tmp_path / "a.jpg"),
        touch(tmp_path / "deep" / "er" / "B.JPG"),
        touch(tmp_path / "deep" / "c.PnG"),
        touch(tmp_path / "deep" / "d.webp"),
    ]
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "deep" / "e.jpg.bak")
    touch(tmp_path / "deep" / "jpg")
    result = scan([tmp_path])
    assert found(result) == {os.fsencode(p) for p in wanted}
    assert result.roots == [os.fsencode(tmp_path)]
    assert not result.problems
    f = next(f for f in result.files if f.path.endswith(b"a.jpg"))
    assert (f.size, f.mtime_ns) == (1, (tmp_path / "a.jpg").stat().st_mtime_ns)


def test_a_file_named_directly_is_taken_and_relative_paths_become_absolute(tmp_path, monkeypatch):
    photo = touch(tmp_path / "one.png")
    monkeypatch.chdir(tmp_path)
    assert found(scan(["one.png"])) == {os.fsencode(photo)}


def test_symlink_loop_ends_and_lists_each_file_once(tmp_path):
    photo = touch(tmp_path / "album" / "p.png")
    (tmp_path / "album" / "loop").symlink_to(tmp_path)
    (tmp_path / "album" / "self").symlink_to(tmp_path / "album")
    for follow in (False, True):
        assert found(scan([tmp_path], follow_symlinks=follow)) == {os.fsencode(photo)}


def test_links_outside_the_roots_are_followed_only_when_asked(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    mine = touch(root / "mine.png")
    theirs = touch(outside / "theirs.png")
    (root / "folder_link").symlink_to(outside)
    (root / "file_link.png").symlink_to(theirs)
    (outside / "back").symlink_to(root)  # a loop through the outside folder

    assert found(scan([root])) == {os.fsencode(mine)}
    followed = found(scan([root], follow_symlinks=True))
    # theirs.png is reached twice (folder link, file link) but listed once, under the link
    # path found first; mine.png is not listed again through `back`.
    assert len(followed) == 2 and os.fsencode(mine) in followed
    assert all(is_under(p, os.fsencode(root)) for p in followed)


def test_links_inside_the_roots_are_followed(tmp_path):
    photo = touch(tmp_path / "real" / "p.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    (tmp_path / "link.png").symlink_to(photo)
    assert len(scan([tmp_path]).files) == 1


def test_broken_link_with_an_image_name_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = scan([tmp_path], follow_symlinks=True)
    assert not result.files
    assert result.problems[0][0].endswith(b"gone.png")


def test_undecodable_name_is_found_and_printable(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.png")
    with open(name, "wb") as f:
        f.write(b"x")
    (file,) = scan([tmp_path]).files
    assert file.path == name
    shown = display_path(file.path)
    assert shown.endswith("caf\\xe9 \\xff.png")
    shown.encode("utf-8")  # printable anywhere
    with open(os.fsdecode(file.path), "rb") as f:  # and the str form still opens the file
        assert f.read() == b"x"


def test_missing_root_is_reported(tmp_path):
    result = scan([tmp_path / "nope"])
    assert not result.files and not result.roots
    assert b"nope" in result.problems[0][0]
    assert "no such file" in result.problems[0][1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_unlistable_folder_is_reported_and_marked(tmp_path):
    touch(tmp_path / "ok.png")
    locked = tmp_path / "locked"
    touch(locked / "hidden.png")
    locked.chmod(0)
    try:
        result = scan([tmp_path])
    finally:
        locked.chmod(0o755)
    assert found(result) == {os.fsencode(tmp_path / "ok.png")}
    assert result.unlisted == [os.fsencode(locked)]
    assert "permission denied" in result.problems[0][1]


def test_is_under_respects_path_boundaries():
    assert is_under(b"/a/b/c.png", b"/a/b")
    assert is_under(b"/a/b", b"/a/b")
    assert is_under(b"/a/b/c.png", b"/")
    assert not is_under(b"/a/bc/d.png", b"/a/b")
