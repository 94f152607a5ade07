"""Pair datasets on real photos: every layout, skipped entries, errors, splits, fingerprints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.pairs import Pair, PairSet, group_pairs, load_pairs


@pytest.fixture
def data(tmp_path, photo_by_name):
    """tmp/set/img/{chelsea,coffee,rocket}.png copied from the real sample photos."""
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        shutil.copy(photo_by_name[name].path, folder / "img" / f"{name}.png")
    return folder


def write_csv(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


# -- CSV / TSV -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_col", "caption_col"),
    [("image", "caption"), ("Path", "Text"), (" filepath ", "TITLE")],
)
def test_csv_accepts_each_column_name(data, image_col, caption_col):
    csv = write_csv(data / "d.csv", f"id,{image_col},{caption_col}\n1,img/chelsea.png,a cat\n")
    pairset = load_pairs(csv)
    assert pairset.kind == "csv"
    assert pairset.pairs == [Pair((data / "img" / "chelsea.png").resolve(), "a cat")]
    assert pairset.labels is None


def test_csv_relative_paths_resolve_against_its_folder_not_the_cwd(data, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = (data / "img" / "coffee.png").resolve()
    write_csv(data / "d.csv", f"image,caption\nimg/chelsea.png,a cat\n{absolute},coffee\n")
    pairset = load_pairs("../set/d.csv")
    assert [p.image for p in pairset.pairs] == [(data / "img" / "chelsea.png").resolve(), absolute]
    assert all(p.image.is_absolute() for p in pairset.pairs)


def test_csv_with_byte_order_mark(data):
    csv = write_csv(data / "d.csv", "image,caption\nimg/rocket.png,a rocket\n", "utf-8-sig")
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")
    assert [p.caption for p in load_pairs(csv).pairs] == ["a rocket"]


def test_csv_skips_and_counts_bad_rows_with_their_line(data):
    csv = write_csv(
        data / "d.csv",
        "image,caption\n"
        "img/chelsea.png,a cat\n"  # line 2: fine
        "img/missing.png,a ghost\n"  # 3: no such file
        'img/coffee.png,"   "\n'  # 4: blank caption
        "img/rocket.png\n"  # 5: short row, no caption value
        ",no image\n"  # 6: empty image path
        "img,a folder\n"  # 7: a folder, not a file
        "img/coffee.png,  a   cup \n",  # 8: fine, whitespace collapsed
    )
    pairset = load_pairs(csv)
    assert [p.caption for p in pairset.pairs] == ["a cat", "a cup"]
    refs = dict(pairset.skipped)
    assert list(refs) == ["d.csv:3", "d.csv:4", "d.csv:5", "d.csv:6", "d.csv:7"]
    assert refs["d.csv:3"].startswith("image file not found") and "missing.png" in refs["d.csv:3"]
    assert refs["d.csv:4"] == refs["d.csv:5"] == "empty caption"
    assert refs["d.csv:6"] == "no image path"
    assert refs["d.csv:7"].startswith("is a folder")


def test_tsv(data):
    tsv = write_csv(data / "d.tsv", "image\tcaption\nimg/chelsea.png\ta cat, sitting\n")
    assert [p.caption for p in load_pairs(tsv).pairs] == ["a cat, sitting"]


def test_header_without_known_columns_names_what_it_found_and_wants(data):
    csv = write_csv(data / "d.csv", "file,description\nimg/chelsea.png,a cat\n")
    with pytest.raises(InvalidInputError) as e:
        load_pairs(csv)
    message = str(e.value)
    assert "'file', 'description'" in message
    for accepted in ("image", "path", "filepath", "caption", "text", "title"):
        assert accepted in message


def test_empty_and_non_utf8_csv_are_errors(data):
    with pytest.raises(InvalidInputError, match="empty file"):
        load_pairs(write_csv(data / "empty.csv", ""))
    latin = data / "latin.csv"
    latin.write_bytes("image,caption\nimg/chelsea.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        load_pairs(latin)


def test_nothing_usable_is_an_error_with_counts(data):
    csv = write_csv(data / "d.csv", "image,caption\nnope.png,a\nimg/chelsea.png,\n")
    with pytest.raises(InvalidInputError, match=r"no usable .*2 entries skipped"):
        load_pairs(csv)


def test_missing_path_and_unknown_file_kind(data):
    with pytest.raises(MissingDataError):
        load_pairs(data / "nope.csv")
    with pytest.raises(InvalidInputError, match="not a pair dataset"):
        load_pairs(data / "img" / "chelsea.png")


# -- JSON Lines ------------------------------------------------------------------------------------


def test_jsonl_keys_caption_lists_and_bad_lines(data):
    lines = [
        json.dumps({"image": "img/chelsea.png", "caption": "a cat"}),
        "{not json",
        "",  # blank lines are not entries
        json.dumps(["img/coffee.png", "coffee"]),
        json.dumps({"path": "img/coffee.png", "text": ["a cup", " ", "coffee"]}),
        json.dumps({"filepath": "img/rocket.png"}),
        json.dumps({"title": "no image"}),
        json.dumps({"image": 7, "caption": "not a path"}),
    ]
    (data / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairset = load_pairs(data / "d.jsonl")
    assert pairset.kind == "jsonl"
    assert [(p.image.name, p.caption) for p in pairset.pairs] == [
        ("chelsea.png", "a cat"),
        ("coffee.png", "a cup"),
        ("coffee.png", "coffee"),
    ]
    reasons = dict(pairset.skipped)
    assert reasons["d.jsonl:2"].startswith("not valid JSON")
    assert reasons["d.jsonl:4"] == "not a JSON object"
    assert reasons["d.jsonl:6"] == "no caption key"
    assert reasons["d.jsonl:7"] == "no image key"
    assert reasons["d.jsonl:8"] == "no image path"
    assert len(pairset.skipped) == 5


def test_jsonl_with_no_known_keys_names_them(data):
    (data / "d.jsonl").write_text('{"file": "img/chelsea.png", "label": "cat"}\n')
    with pytest.raises(InvalidInputError, match=r"\['file', 'label'\].*image, path, filepath"):
        load_pairs(data / "d.jsonl")


# -- folders ---------------------------------------------------------------------------------------


def test_folder_of_images_with_txt_captions(data):
    img = data / "img"
    (img / "chelsea.txt").write_text("a cat\n\n  a tabby cat  \n", encoding="utf-8")
    (img / "coffee.txt").write_text("   \n", encoding="utf-8")  # blank
    (img / "deeper").mkdir()
    shutil.copy(img / "rocket.png", img / "deeper" / "launch.png")
    (img / "deeper" / "launch.txt").write_bytes(b"\xef\xbb\xbfa rocket launch")
    # rocket.png has no .txt at all
    pairset = load_pairs(img)
    assert pairset.kind == "captions"
    assert [(p.image.name, p.caption) for p in pairset.pairs] == [
        ("chelsea.png", "a cat"),
        ("chelsea.png", "a tabby cat"),
        ("launch.png", "a rocket launch"),
    ]
    assert dict(pairset.skipped) == {
        "coffee.png": "empty caption",
        "rocket.png": "no caption file rocket.txt",
    }


def test_unreadable_caption_file_is_skipped(data):
    img = data / "img"
    (img / "chelsea.txt").write_text("a cat")
    (img / "coffee.txt").write_bytes(b"caf\xe9")
    reasons = dict(load_pairs(img).skipped)
    assert reasons["coffee.png"] == "caption file coffee.txt is not UTF-8 text"


def test_label_tree(tmp_path, photos):
    root = tmp_path / "tree"
    for photo in photos[:4]:
        folder = root / photo.label.replace(" ", "_") / "sub"
        folder.mkdir(parents=True)
        shutil.copy(photo.path, folder / f"{photo.name}.png")
    shutil.copy(photos[0].path, root / "sea-lion_pup.png")  # not inside a label folder
    (root / "sea-lion_pup").mkdir()
    shutil.copy(photos[0].path, root / "sea-lion_pup" / "a.png")
    pairset = load_pairs(root)
    assert pairset.kind == "labels"
    expected = sorted([p.label for p in photos[:4]] + ["sea lion pup"])
    assert pairset.labels == expected
    assert all(p.caption == p.label for p in pairset.pairs)
    assert {p.label for p in pairset.pairs if p.image.name == "chelsea.png"} == {"cat"}
    assert pairset.skipped == [("sea-lion_pup.png", "not inside a label folder")]


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "notes.md").write_text("no images here")
    with pytest.raises(InvalidInputError, match="no images or sounds found"):
        load_pairs(tmp_path)


# -- grouping --------------------------------------------------------------------------------------


def test_group_pairs_merges_identical_captions(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    pairs = [Pair(b, "x"), Pair(a, "y"), Pair(a, "x"), Pair(c, "z"), Pair(b, "x")]
    images, texts, relevant = group_pairs(pairs)
    assert images == [b, a, c]
    assert texts == ["x", "y", "z"]
    np.testing.assert_array_equal(
        relevant, [[True, True, False], [False, True, False], [False, False, True]]
    )


# -- split -----------------------------------------------------------------------------------------


@pytest.fixture
def many_captions(data):
    """150 rows over 3 images and 100 captions: captions 0..49 appear on two images."""
    rows = ["image,caption"]
    names = ["chelsea", "coffee", "rocket"]
    for i in range(100):
        rows.append(f"img/{names[i % 3]}.png,caption number {i}")
        if i < 50:
            rows.append(f"img/{names[(i + 1) % 3]}.png,caption number {i}")
    return load_pairs(write_csv(data / "d.csv", "\n".join(rows) + "\n"))


def test_split_is_deterministic_and_disjoint_by_caption(many_captions, data):
    train, val = many_captions.split(0.2, seed=0)
    again = load_pairs(data / "d.csv").split(0.2, seed=0)
    assert (train.pairs, val.pairs) == (again[0].pairs, again[1].pairs)
    assert sorted(train.pairs + val.pairs, key=str) == sorted(many_captions.pairs, key=str)
    val_captions = {p.caption for p in val.pairs}
    assert len(val_captions) == 20  # round(100 * 0.2) of the distinct captions
    assert val_captions.isdisjoint(p.caption for p in train.pairs)
    other = many_captions.split(0.2, seed=1)[1]
    assert {p.caption for p in other.pairs} != val_captions
    assert (train.kind, train.source, train.skipped) == ("csv", many_captions.source, [])


def test_split_rejects_fractions_outside_0_1(many_captions):
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(InvalidInputError):
            many_captions.split(bad)


def test_label_tree_split_is_stratified(tmp_path, photos):
    root = tmp_path / "tree"
    sizes = {"cat": 10, "dog": 2, "moon": 1, "car": 5}
    for label, count in sizes.items():
        (root / label).mkdir(parents=True)
        for i in range(count):
            shutil.copy(photos[i].path, root / label / f"{i}.png")
    pairset = load_pairs(root)
    train, val = pairset.split(0.3, seed=3)
    for label, count in sizes.items():
        n_train = sum(p.label == label for p in train.pairs)
        n_val = sum(p.label == label for p in val.pairs)
        assert n_train + n_val == count
        if count >= 2:
            assert n_train >= 1 and n_val >= 1
        else:
            assert n_val == 0
    assert sum(p.label == "cat" for p in val.pairs) == 3  # round(10 * 0.3)
    assert train.pairs == pairset.split(0.3, seed=3)[0].pairs


# -- fingerprint -----------------------------------------------------------------------------------


def test_fingerprint_is_stable_moves_with_the_folder_and_sees_changes(data, tmp_path):
    text = "image,caption\nimg/chelsea.png,a cat\nimg/coffee.png,coffee\n"
    fp = load_pairs(write_csv(data / "d.csv", text)).fingerprint()
    assert load_pairs(data / "d.csv").fingerprint() == fp
    shuffled = "image,caption\nimg/coffee.png,coffee\nimg/chelsea.png,a cat\n"
    assert load_pairs(write_csv(data / "e.csv", shuffled)).fingerprint() == fp

    moved = shutil.copytree(data, tmp_path / "moved")
    assert load_pairs(moved / "d.csv").fingerprint() == fp

    edited = "image,caption\nimg/chelsea.png,a kitten\nimg/coffee.png,coffee\n"
    assert load_pairs(write_csv(moved / "d.csv", edited)).fingerprint() != fp
    write_csv(moved / "d.csv", text)
    shutil.copy(data / "img" / "rocket.png", moved / "img" / "coffee.png")
    assert load_pairs(moved / "d.csv").fingerprint() != fp


def test_pairset_is_plain_data(tmp_path):
    pairset = PairSet([Pair(tmp_path / "a.png", "a")], [], tmp_path / "x.csv", "csv")
    assert len(pairset) == 1 and pairset.base == tmp_path
    assert pairset.relative(tmp_path / "img" / "a.png") == "img/a.png"
