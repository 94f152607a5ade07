"""A held-out judge for generated images: a model the generator did not optimise against.

An image optimised against one network can fool that network without looking like anything
(an adversarial example), so its own similarity proves little. The judge is a different image
network: EfficientNet-Lite2 (lite uses Lite0) mixed by ConSE over the ImageNet class vectors of
MiniLM alone (lite mixes MiniLM and e5), so neither the pixels' network nor the text mixture is
the generator's. It reports the *rank* of the prompt among a few hundred other prompts (1 = the
judge's best match), which needs no calibration between models: a photo of the thing ranks
its prompt in the top few of 200, random noise far down the list (tests/test_generate_judge.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.images import ImageSource
from xmodal.models.base import Encoder

# The default judge: lite-en's text side and measured settings (MiniLM alone, all 1000 classes
# at T=2, padded squares) over the Lite2 network instead of Lite0.
JUDGE_IMAGE_TOWER = "lite2"  # a key of lite's IMAGE_TOWERS
JUDGE_TEXT_VARIANT = "lite-en"  # a key of lite's VARIANTS

# Everyday things, most of them named after Unicode emoji (animals, food, household objects,
# clothes, vehicles, tools, instruments, places), picked by hand: concrete, picturable, one
# thing each. Kept apart from the benchmark's prompts and their near-synonyms (no giraffe,
# teapot, pizza, melon, tower...), so a distractor never is the right answer there. Entries
# without an article get "a"/"an" when they become prompts.
_EVERYDAY = """
ant, bat, bear, beaver, bee, beetle, bison, boar, butterfly, camel, chicken, cow, crab,
crocodile, deer, dog, donkey, duck, eagle, elephant, flamingo, fox, frog, goat, gorilla,
hedgehog, hippopotamus, kangaroo, koala, lion, lizard, llama, lobster, monkey, mosquito,
mouse, octopus, otter, owl, parrot, peacock, penguin, pig, rabbit, raccoon, rhinoceros,
rooster, scorpion, seal, shark, sheep, shrimp, skunk, sloth, snail, snake, spider, squid,
squirrel, swan, tiger, turkey, turtle, whale, wolf,
avocado, bagel, baguette, bacon, bell pepper, blueberry, broccoli, cheeseburger, cheese,
cherry blossom, chocolate bar, coconut, cookie, corn cob, croissant, cucumber, cupcake,
doughnut, egg, fried egg, garlic, grapes, hot dog, ice cream cone, kiwi fruit, lemon,
lollipop, mango, mushroom, olive, onion, pancake, peach, peanut, pie, popcorn,
potato, pretzel, salad, sandwich, sausage, sushi, taco, waffle, bowl of rice, bowl of soup,
wine glass, beer mug, bottle of milk, glass of orange juice,
alarm clock, armchair, backpack, basket, bathtub, bed, bell, bench, book, bookshelf, broom,
bucket, candle, chair, chandelier, clothes hanger, comb, couch, cradle, desk lamp, door,
envelope, fire extinguisher, flower pot, fork, frying pan, hammer, hourglass, jar, key,
kitchen knife, ladder, lamp, laptop, lock, magnet, mailbox, microwave oven, mirror,
paintbrush, paper clip, pencil, piggy bank, pillow, plate, pot plant, refrigerator, ruler,
pair of scissors, screwdriver, sewing machine, shovel, soap, sponge, spoon, stool, suitcase,
table, telephone, television, toaster, toilet, toothbrush, towel, vase, washing machine,
watering can, window, wrench, safety pin, padlock, light bulb, battery, globe, compass,
calculator, keyboard, computer mouse, headphones, microphone, camera, radio, loudspeaker,
robot, teddy bear, toy car, balloon, kite, yo-yo, jigsaw puzzle, chess piece, dice,
baseball cap, boot, bow tie, crown, dress, glove, handbag, hat, jacket, jeans, necktie,
pair of glasses, ring, sandal, scarf, sneaker, sock, sunglasses, sweater, t-shirt, wallet,
wristwatch, high-heeled shoe,
airplane, ambulance, bicycle, canoe, car, fire engine, helicopter, motorcycle, pickup truck,
police car, rowing boat, sailboat, scooter, skateboard, sled, speedboat, steam locomotive,
submarine, taxi, tractor, train, tram, truck, wheelchair, hot air balloon, parachute,
traffic light, anchor,
accordion, banjo, drum, flute, guitar, harp, piano, saxophone, trumpet, xylophone,
baseball bat, basketball, bowling ball, boxing glove, football, golf ball, ice skate,
tennis racket, trophy, medal, surfboard, skis, fishing rod, tent,
barn, bridge, castle, church, windmill, fountain, skyscraper, igloo, log cabin,
cactus, palm tree, pine tree, maple leaf, rose, tulip, daisy, four-leaf clover, seashell,
mountain, waterfall, island, cloud, moon, star, lightning bolt, campfire, snowflake
"""


@lru_cache(maxsize=1)
def _everyday() -> tuple[str, ...]:
    items = [w.strip() for w in _EVERYDAY.replace("\n", " ").split(",")]
    # A stable shuffle (by hash, not by the order written), so any prefix mixes every group.
    return tuple(sorted(filter(None, items), key=lambda w: hashlib.blake2b(w.encode()).digest()))


def as_prompt(thing: str) -> str:
    """'owl' -> 'an owl'; entries that start with an article are kept."""
    if re.match(r"(a|an|the)\s", thing):
        return thing
    return f"{'an' if thing[0] in 'aeiou' else 'a'} {thing}"


_STOPWORDS = frozenset({"a", "an", "the", "of", "with", "and", "in", "on", "at", "some"})


def content_words(text: str) -> frozenset[str]:
    """Lower-case words other than articles and prepositions, trailing plural 's' dropped."""
    words = re.findall(r"[a-z]+", text.lower())
    return frozenset(w.removesuffix("s") for w in words if w not in _STOPWORDS)


def default_distractors(n: int = 200, exclude: Sequence[str] = ()) -> list[str]:
    """n everyday-object prompts ('a bicycle', ...), none sharing a content word with any
    prompt in `exclude` (so 'a school bus' leaves out 'a bus' and 'a school')."""
    banned = frozenset().union(*(content_words(p) for p in exclude))
    pool = [as_prompt(t) for t in _everyday() if not content_words(t) & banned]
    if not 1 <= n <= len(pool):
        raise InvalidInputError(
            f"default_distractors: n must be 1..{len(pool)} here, got {n} "
            f"(the list holds {len(_everyday())} prompts, {len(pool)} after exclusions)"
        )
    return pool[:n]


def image_network(model: Encoder | str) -> str:
    """What an encoder's image side is, to tell whether two encoders share it: lite variants
    by their EfficientNet's weight package, any other model by its name (a loaded encoder's
    name is its full registry name, so two checkpoints of one architecture differ)."""
    from xmodal.models.lite import IMAGE_TOWERS, VARIANTS
    from xmodal.models.registry import parse_name

    variant = getattr(model, "variant", None)
    if isinstance(model, str):
        prefix, arg = parse_name(model)
        variant = VARIANTS.get(arg) if prefix == "lite" else None
    if getattr(variant, "image_tower", None) in IMAGE_TOWERS:
        return IMAGE_TOWERS[variant.image_tower].package
    return model.strip() if isinstance(model, str) else model.name


def default_judge_encoder(*, device: str = "cpu", num_threads: int | None = None) -> Encoder:
    """EfficientNet-Lite2 + MiniLM by ConSE, with lite's measured temperature and padding."""
    from xmodal.models.device import resolve_device
    from xmodal.models.lite import VARIANTS
    from xmodal.models.lite.conse import LiteEncoder

    variant = dataclasses.replace(
        VARIANTS[JUDGE_TEXT_VARIANT],
        name="judge-lite2-en",
        image_tower=JUDGE_IMAGE_TOWER,
        note="held-out judge: EfficientNet-Lite2 + MiniLM (ConSE)",
    )
    # Eager torch: a few images per run do not repay exporting and caching an ONNX graph.
    return LiteEncoder(
        variant, runtime="torch", device=resolve_device(device), num_threads=num_threads
    )


class HeldOutJudge:
    """Ranks a prompt among distractors by a model the generator did not use.

    encoder: the judge's model (an Encoder or a registry name); None builds the default
    (default_judge_encoder). generator: the encoder (or its name) that made the images; the
    judge refuses one that shares its image network, whose verdict would not be held out.
    """

    def __init__(
        self,
        encoder: Encoder | str | None = None,
        *,
        generator: Encoder | str | None = None,
        device: str = "cpu",
        num_threads: int | None = None,
    ):
        if isinstance(encoder, str):
            from xmodal.models import load_model

            encoder = load_model(encoder, device=device)
        self.encoder = encoder or default_judge_encoder(device=device, num_threads=num_threads)
        if generator is not None:
            self.check_held_out(generator)

    @property
    def name(self) -> str:
        return self.encoder.name

    def check_held_out(self, generator: Encoder | str) -> None:
        """InvalidInputError if `generator` sees images through the judge's own network."""
        shared = image_network(generator)
        if shared == image_network(self.encoder):
            theirs = getattr(generator, "name", generator)
            raise InvalidInputError(
                f"the judge {self.name!r} and the generator {theirs!r}"
                f" share the image network {shared}: an image optimised against a network can "
                "fool it, so its verdict would not be held out; judge with another model"
            )

    def scores(self, images: Sequence[ImageSource], texts: Sequence[str]) -> np.ndarray:
        """(len(images), len(texts)) cosine similarities in the judge's space."""
        if not images or not texts:
            raise InvalidInputError("the judge needs at least one image and one text")
        return self.encoder.embed_images(list(images)) @ self.encoder.embed_texts(list(texts)).T

    def rank(
        self, image: ImageSource, prompt: str, distractors: Sequence[str] | None = None
    ) -> int:
        """1 + how many distractors the judge finds closer to `image` than `prompt`.

        distractors: None for default_distractors(200, exclude=[prompt]); copies of the prompt
        among them are dropped (case and surrounding blanks ignored)."""
        return self.ranks([image], [prompt], distractors)[0]

    def ranks(
        self,
        images: Sequence[ImageSource],
        prompts: Sequence[str],
        distractors: Sequence[str] | None = None,
    ) -> list[int]:
        """rank() of each image against its own prompt, sharing one set of distractors (None:
        default_distractors(200, exclude=prompts)). Ties count in the prompt's favour."""
        images, prompts = list(images), [_check_prompt(p) for p in prompts]
        if len(images) != len(prompts):
            raise InvalidInputError(f"{len(images)} images but {len(prompts)} prompts")
        if distractors is None:
            distractors = default_distractors(200, exclude=prompts)
        distractors = [_check_prompt(d) for d in distractors]
        # One column per text, copies that differ only in case or blanks sharing it.
        column: dict[str, int] = {}
        texts = []
        for text in prompts + distractors:
            if _key(text) not in column:
                column[_key(text)] = len(texts)
                texts.append(text)
        sims = self.scores(images, texts)
        others = np.unique(np.array([column[_key(d)] for d in distractors], dtype=int))
        out = []
        for row, prompt in zip(sims, prompts):
            own = column[_key(prompt)]
            rivals = others[others != own]
            if not len(rivals):
                raise InvalidInputError(f"no distractors left for {prompt!r}: give others")
            out.append(1 + int((row[rivals] > row[own]).sum()))
        return out


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _check_prompt(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"prompts and distractors must be non-blank texts, got {text!r}")
    return text.strip()
