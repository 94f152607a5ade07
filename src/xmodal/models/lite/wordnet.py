"""A small reader of the WordNet 3.0 noun database (Debian's wordnet-base), for hypernym paths.

ImageNet synset ids (n01440764) are WordNet 3.0 noun offsets, and those offsets are byte
offsets into data.noun, so one seek() per synset reads its line: no need to load the ~15 MB
file. Line format (wndb(5)):

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] [frames] | gloss

w_cnt is two hex digits, p_cnt three decimal digits, and each pointer is
`symbol offset pos source/target`. Hypernyms are `@` (a kind of) and `@i` (an instance of).

Only build time (scripts/build_lite_data.py) and the tests read the database: at runtime lite
reads the paths it ships in data/imagenet_hypernyms.tsv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xmodal.errors import InvalidInputError, MissingDataError

DEFAULT_ROOT = Path("/usr/share/wordnet")
DEBIAN_PACKAGE = "wordnet-base"
HYPERNYM_SYMBOLS = ("@", "@i")
# Far deeper than WordNet's deepest noun path (about 20): a guard against a corrupt file's cycle.
MAX_DEPTH = 64


@dataclass(frozen=True)
class NounSynset:
    offset: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[int, ...]  # offsets, in file order
    gloss: str


def parse_noun_line(line: str) -> NounSynset:
    """One data.noun line as a synset (lemmas with underscores turned to spaces)."""
    data, _, gloss = line.partition(" | ")
    fields = data.split()
    try:
        offset = int(fields[0])
        w_cnt = int(fields[3], 16)
        words = fields[4 : 4 + 2 * w_cnt : 2]
        at = 4 + 2 * w_cnt
        p_cnt = int(fields[at])
        pointers = [fields[at + 1 + 4 * i : at + 5 + 4 * i] for i in range(p_cnt)]
    except (IndexError, ValueError) as e:
        raise InvalidInputError(f"not a WordNet data.noun line: {line[:80]!r}") from e
    hypernyms = tuple(int(p[1]) for p in pointers if p[0] in HYPERNYM_SYMBOLS and p[2] == "n")
    lemmas = tuple(w.replace("_", " ") for w in words)
    return NounSynset(offset, lemmas, hypernyms, gloss.strip())


def synset_offset(synset: str) -> int:
    """n01440764 -> 1440764; only noun ids."""
    if len(synset) != 9 or synset[0] != "n" or not synset[1:].isdigit():
        raise InvalidInputError(f"not a WordNet noun synset id: {synset!r}")
    return int(synset[1:])


class NounDatabase:
    """data.noun opened once, read line by line at the offsets asked for (with a cache)."""

    def __init__(self, root: Path = DEFAULT_ROOT):
        path = Path(root) / "data.noun"
        try:
            self._file = path.open("rb")
        except OSError as e:
            raise MissingDataError(
                f"{path} not found: install the Debian package {DEBIAN_PACKAGE}"
            ) from e
        self._cache: dict[int, NounSynset] = {}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> NounDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def synset(self, offset: int) -> NounSynset:
        if offset not in self._cache:
            self._file.seek(offset)
            line = self._file.readline().decode("utf-8")
            found = parse_noun_line(line) if line[:1].isdigit() else None
            # The offset is the line's own first field: a mismatch means the file is not
            # WordNet 3.0 (or the id is not a synset), and reading on would give nonsense.
            if found is None or found.offset != offset:
                raise InvalidInputError(f"no WordNet 3.0 noun synset at offset {offset:08d}")
            self._cache[offset] = found
        return self._cache[offset]

    def hypernym_path(self, offset: int) -> list[str]:
        """First lemma of each ancestor, nearest first, up to the root; the synset excluded.

        At each step this follows the FIRST hypernym pointer (`@` or `@i`, in file order).
        About 3% of noun synsets (38 of the 1000 ImageNet classes) have more than one; the
        first is the one WordNet lists first, and a single chain keeps the class text short and
        deterministic, where the union of all paths would mix two taxonomies in one text.
        """
        path: list[str] = []
        current = self.synset(offset)
        while current.hypernyms:
            if len(path) >= MAX_DEPTH:
                raise InvalidInputError(f"hypernym cycle above {offset:08d}")
            current = self.synset(current.hypernyms[0])
            path.append(current.lemmas[0])
        return path


def hypernym_path(offset: int, root: Path = DEFAULT_ROOT) -> list[str]:
    """The ancestors of one noun synset (see NounDatabase.hypernym_path)."""
    with NounDatabase(root) as db:
        return db.hypernym_path(offset)


def imagenet_hypernyms(synsets: list[str], root: Path = DEFAULT_ROOT) -> dict[str, list[str]]:
    """{synset id: its hypernym path} for ImageNet-style ids (n01440764), in the order given."""
    with NounDatabase(root) as db:
        return {s: db.hypernym_path(synset_offset(s)) for s in synsets}
