"""What lite's hearing finds, on real recordings nobody here made (issue 14's figures).

    python benchmarks/audio_search.py            # ~25 min on 2 cores the first time; cached after
    python benchmarks/audio_search.py --every 3  # a third of the voice prompts

1. Speech: every Asterisk voice prompt with a shipped transcript is heard; each is then queried by
   a phrase it contains (the middle four words of its transcript, all of them when shorter). A
   hit: a prompt containing that phrase at rank 1 / in the top 5 among all prompts.
2. Sound effects, text -> audio: Tux Paint's stamp sounds (a dog barking is `dog.ogg`, a siren
   `firetruck.ogg`) captioned mechanically from their file names ("heron_greatblue_flying" ->
   "heron greatblue flying"), and the other packages' effects (freeciv, Heroes, sound-icons)
   captioned by hand from their names (table below; names that say nothing, like "menu01", are
   left out). Queries are the unique captions; recall@1/5/10 against the expected recall of a
   random ranking.
3. Audio -> image: each stamp sound queries the stamp pictures of the same set plus the
   scikit-image photos and a few clip-art bells and trains; recall of its own picture, and the
   top 5 of a few named recordings (a cat, a dog, bells...; no train recording ships).

Each part is scored for the sound alone (SoundNet through ConSE), the transcript alone, and the
two combined as lite indexes them, and a small grid over HearingConfig's sound parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import re
from math import comb
from pathlib import Path

import numpy as np

from xmodal.audio import load_audio
from xmodal.models import load_model
from xmodal.models.lite.hearing import HearingConfig, LiteHearing
from xmodal.models.lite.soundnet import RATE, SoundNetRunner

ASTERISK = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
STAMPS = Path("/usr/share/tuxpaint/stamps")
CLIPART = Path("/usr/share/openclipart/png")
# Recordings outside the stamps, and clip art of what they are, added to the picture pool.
NAMED_SOUNDS = (
    "/usr/share/sounds/freedesktop/stereo/bell.oga",
    "/usr/share/tuxpaint/sounds/typewriterbell.wav",
    "/usr/share/sounds/sound-icons/canary-long.wav",
)
NAMED_PICTURES = (
    "recreation/holiday/christmas/jingle_bells_01.png",
    "computer/icons/flat-theme/applications/bell.png",
    "recreation/toys/kiddy_train_orlando_kara_.png",
    "transportation/roadsigns/train.png",
)
OUT = Path(__file__).parent / "out" / "audio_search"
KS = (1, 5, 10)

HAND_CAPTIONS = {
    "/usr/share/games/freeciv/stdsounds": {
        "LrgCan": "a large cannon firing",
        "MedCan": "a cannon firing",
        "LrgExpl": "a large explosion",
        "SmlExpl": "a small explosion",
        "MgBar1": "machine gun fire",
        "MgBar2": "machine gun fire",
        "MgHeavy": "heavy machine gun fire",
        "Mortar": "a mortar firing",
        "Splash": "a splash of water",
        "Tread": "tank treads rolling",
        "foot3": "footsteps",
        "metbrk": "metal breaking",
        "woodbrk": "wood breaking",
    },
    "/usr/share/games/heroes/sfx": {
        "alien": "an alien",
        "argent01": "money, coins",
        "coins": "money, coins",
        "claxon": "a car horn",
        "clock01": "a clock ticking",
        "clock02": "a clock ticking",
        "explo01": "an explosion",
        "foule1": "a crowd cheering",
        "foule2": "a crowd cheering",
        "ecrase02": "something crushed",
    },
    "/usr/share/sounds/sound-icons": {
        "canary-long": "a canary singing",
        "cembalo-1": "a harpsichord",
        "cembalo-2": "a harpsichord",
        "cembalo-3": "a harpsichord",
        "electric-piano-3": "an electric piano",
        "glass-water-1": "a glass of water",
        "guitar-12": "a guitar",
        "guitar-13": "a guitar",
        "klavichord-4": "a clavichord",
        "percussion-10": "percussion, drums",
        "percussion-12": "percussion, drums",
        "piano-3": "a piano",
        "trumpet-1": "a trumpet",
        "trumpet-12": "a trumpet",
        "violoncello-7": "a cello",
        "xylofon": "a xylophone",
    },
    "/usr/share/tuxpaint/sounds": {
        "bubble": "bubbles",
        "giggle": "a giggle, laughing",
        "harp": "a harp",
        "keyclick": "a keyboard click",
        "typewriterbell": "a typewriter bell",
        "eraser1": "an eraser rubbing",
    },
}


def caption_from_name(stem: str) -> str:
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem).replace("_", " ").replace("-", " ")
    return re.sub(r"\s+\d+$|\d+$", "", words.lower()).strip()


def stamps() -> list[tuple[Path, str, Path | None]]:
    """(sound, caption, picture) of every stamp with a sound effect (not the spoken
    descriptions, not letters and digits)."""
    out = []
    for sound in sorted(STAMPS.rglob("*.ogg")):
        if "_desc" in sound.stem or "symbols" in sound.parts:
            continue
        picture = sound.with_suffix(".png")
        out.append((sound, caption_from_name(sound.stem), picture if picture.is_file() else None))
    return out


def effects() -> list[tuple[Path, str]]:
    out = []
    for folder, table in HAND_CAPTIONS.items():
        for stem, caption in table.items():
            found = [p for p in Path(folder).glob(f"{stem}.*") if p.suffix in (".wav", ".ogg")]
            if found:
                out.append((found[0], caption))
    return out


def prompts() -> list[tuple[Path, str]]:
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        name, sep, text = line.partition(":")
        path, text = ASTERISK / f"{name.strip()}.wav", text.strip()
        if sep and text and text[0] not in "[<" and path.is_file():
            out.append((path, text))
    return out


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def phrase(text: str, n: int = 4) -> str:
    w = words(text)
    start = max(0, (len(w) - n) // 2)
    return " ".join(w[start : start + n])


class Heard:
    """SoundNet probabilities and transcripts of a list of files, cached on disk."""

    def __init__(self, name: str, paths: list[Path], hearing: LiteHearing):
        OUT.mkdir(parents=True, exist_ok=True)
        cache = OUT / f"{name}.npz"
        if cache.exists() and list(np.load(cache)["paths"]) == [str(p) for p in paths]:
            data = np.load(cache)
            self.objects, self.scenes = data["objects"], data["scenes"]
            self.texts, self.shares = list(data["texts"]), data["shares"]
            return
        runner = SoundNetRunner(num_threads=2)
        objects, scenes, texts, shares = [], [], [], []
        for i, path in enumerate(paths):
            clip = load_audio(path, rate=RATE, truncate=True)
            o, s = runner([clip.samples])
            said = hearing.transcripts([clip])[0]
            objects.append(o[0])
            scenes.append(s[0])
            texts.append(said.text)
            shares.append(said.speech_share)
            if i % 50 == 0:
                print(f"  {name}: {i}/{len(paths)}", flush=True)
        self.objects, self.scenes = np.stack(objects), np.stack(scenes)
        self.texts, self.shares = texts, np.array(shares, np.float32)
        np.savez(
            cache,
            paths=[str(p) for p in paths],
            objects=self.objects,
            scenes=self.scenes,
            texts=self.texts,
            shares=self.shares,
        )

    def vectors(self, hearing: LiteHearing) -> dict[str, np.ndarray]:
        sound = hearing.mix_sound(self.objects, self.scenes)
        speech = hearing.text_vectors(self.texts)
        return {
            "sound": sound,
            "transcript": speech,
            "combined": hearing.combine(sound, speech, self.shares),
        }


def recall(sim: np.ndarray, relevant: np.ndarray) -> dict[int, float]:
    """sim, relevant: (queries, items); a hit when a relevant item is in the top k."""
    order = np.argsort(-sim, axis=1, kind="stable")
    ranked = np.take_along_axis(relevant, order, axis=1)
    return {k: float(ranked[:, :k].any(axis=1).mean()) for k in KS}


def random_recall(relevant: np.ndarray) -> dict[int, float]:
    n = relevant.shape[1]
    counts = relevant.sum(axis=1)
    return {k: float(np.mean([1 - comb(n - r, k) / comb(n, k) for r in counts])) for k in KS}


def fmt(r: dict[int, float]) -> str:
    return "  ".join(f"R@{k} {100 * v:5.1f}" for k, v in r.items())


def speech_part(model, hearing: LiteHearing, every: int) -> None:
    items = prompts()[::every]
    heard = Heard(f"prompts-{every}", [p for p, _ in items], hearing)
    phrases = [phrase(t) for _, t in items]
    said = [" ".join(words(t)) for _, t in items]
    relevant = np.array([[f" {q} " in f" {s} " for s in said] for q in phrases])
    queries = model.embed_texts(phrases)
    print(f"\nSpeech: {len(items)} Asterisk prompts, each queried by a phrase it contains")
    print(f"  random      {fmt(random_recall(relevant))}")
    for name, vectors in heard.vectors(hearing).items():
        print(f"  {name:<11} {fmt(recall(queries @ vectors.T, relevant))}")


def effects_part(model, hearing: LiteHearing, grid: bool) -> None:
    stamp_items = stamps()
    sets = {
        "Tux Paint stamps (captions = file names)": [(p, c) for p, c, _ in stamp_items],
        "freeciv, Heroes, sound-icons, Tux Paint (captions by hand)": effects(),
    }
    for title, items in sets.items():
        heard = Heard(re.sub(r"\W+", "_", title.split(" (")[0]), [p for p, _ in items], hearing)
        captions = [c for _, c in items]
        unique = sorted(set(captions))
        relevant = np.array([[c == q for c in captions] for q in unique])
        queries = model.embed_texts(unique)
        print(f"\nText -> audio, {title}: {len(items)} sounds, {len(unique)} captions")
        print(f"  random      {fmt(random_recall(relevant))}")
        for name, vectors in heard.vectors(hearing).items():
            print(f"  {name:<11} {fmt(recall(queries @ vectors.T, relevant))}")
        if grid:
            print("  sound alone over HearingConfig (temperature, top_k, scene_weight):")
            for t, k, w in itertools.product((0.25, 0.5, 1.0), (10, 20, None), (0.0, 0.35, 0.6)):
                h = LiteHearing(
                    hearing.encoder,
                    dataclasses.replace(hearing.config, temperature=t, top_k=k, scene_weight=w),
                )
                sim = queries @ h.mix_sound(heard.objects, heard.scenes).T
                print(f"    T={t:<4} k={k!s:<4} w={w:<4} {fmt(recall(sim, relevant))}")


def image_part(model, hearing: LiteHearing) -> None:
    from PIL import Image
    from skimage import data

    items = [(s, c, p) for s, c, p in stamps() if p is not None]
    heard = Heard("stamp_pictures", [s for s, _, _ in items], hearing)
    photos = {n: getattr(data, n)() for n in ("chelsea", "coffee", "rocket", "astronaut")}
    clipart = [CLIPART / p for p in NAMED_PICTURES if (CLIPART / p).is_file()]
    names = [c for _, c, _ in items] + [f"photo:{n}" for n in photos]
    names += [f"clipart:{p.stem}" for p in clipart]
    pictures = [Image.open(p).convert("RGB") for _, _, p in items]
    pictures += [Image.fromarray(a).convert("RGB") for a in photos.values()]
    pictures += [Image.open(p).convert("RGB") for p in clipart]
    image_vectors = model.embed_images(pictures)
    relevant = np.zeros((len(items), len(names)), bool)
    relevant[np.arange(len(items)), np.arange(len(items))] = True
    print(f"\nAudio -> image: {len(items)} stamp sounds against {len(names)} pictures")
    print(f"  random      {fmt(random_recall(relevant))}")
    for name, vectors in heard.vectors(hearing).items():
        if name == "transcript":
            continue
        print(f"  {name:<11} {fmt(recall(vectors @ image_vectors.T, relevant))}")
    combined = heard.vectors(hearing)["combined"]
    for wanted in ("blackcat", "dog", "rooster", "firetruck", "cow", "horse", "fireworks"):
        rows = [i for i, (s, _, _) in enumerate(items) if s.stem == wanted]
        if rows:
            top = np.argsort(-(combined[rows[0]] @ image_vectors.T))[:5]
            print(f"  {wanted + '.ogg':<14} top 5: {', '.join(names[i] for i in top)}")
    sounds = [Path(p) for p in NAMED_SOUNDS if Path(p).is_file()]
    for sound, vector in zip(sounds, model.embed_audio(sounds), strict=True):
        top = np.argsort(-(vector @ image_vectors.T))[:5]
        print(f"  {sound.name:<14} top 5: {', '.join(names[i] for i in top)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-grid", action="store_true", help="skip the HearingConfig grid")
    parser.add_argument("--skip-speech", action="store_true")
    parser.add_argument("--every", type=int, default=1, help="every n-th Asterisk prompt")
    args = parser.parse_args()
    model = load_model("lite", num_threads=2)
    hearing = LiteHearing(model, HearingConfig())
    print(f"HearingConfig: {hearing.config}")
    if not args.skip_speech:
        speech_part(model, hearing, args.every)
    effects_part(model, hearing, grid=not args.no_grid)
    image_part(model, hearing)


if __name__ == "__main__":
    main()
