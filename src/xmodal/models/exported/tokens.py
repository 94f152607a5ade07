"""Text -> token feeds for an exported text graph, with the `tokenizers` package and numpy alone.

A model folder holds a tokenizer.json; its TokenizerSpec (in the card) is the single truth about
truncation and padding: whatever the file says about them is dropped when it loads, and the
spec's rules are applied instead, so the same file cannot feed a graph two ways.

`clean` names the text clean-up open_clip applies in Python before tokenizing, which a
tokenizer.json cannot express: "lower" (open_clip's CLIP tokenizer), "whitespace" (its
Hugging Face tokenizers) and "canonicalize" (SigLIP's). open_clip starts each with
ftfy.fix_text; ftfy cannot be imported here, so _fix_text redoes the character-level fixes it
makes (HTML entities, C1 controls read as Windows-1252, Latin ligatures, full/half width forms,
curly quotes, terminal escapes, control characters, NFC). What it does not redo is ftfy's
mojibake repair: "cafÃ©" stays as it is, where open_clip's tokenizer reads "café".
"""

from __future__ import annotations

import contextlib
import html
import re
import string
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xmodal.errors import ModelLoadError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PADDINGS = ("longest", "max_length")
CLEANS = ("lower", "whitespace", "canonicalize")


@dataclass(frozen=True)
class TokenizerSpec:
    """How texts become the feeds of one text graph."""

    file: str  # tokenizer.json file name inside the model folder
    inputs: tuple[str, ...]  # feeds the text graph takes, from INPUT_NAMES
    max_length: int  # tokens per text after truncation, special tokens included
    padding: str  # "longest": to the longest text of a batch; "max_length": always max_length
    pad_id: int
    clean: str | None = None  # one of CLEANS, applied before the tokenizer (see the module doc)

    def to_dict(self) -> dict:
        raw = asdict(self)
        raw["inputs"] = list(self.inputs)
        return raw

    @classmethod
    def from_dict(cls, raw: dict) -> TokenizerSpec:
        """The spec in `raw` (a card's tokenizer entry); ModelLoadError when it is not one."""
        if not isinstance(raw, dict):
            raise ModelLoadError(f"a tokenizer spec must be an object, not {type(raw).__name__}")
        known = {"file", "inputs", "max_length", "padding", "pad_id", "clean"}
        unknown = sorted(set(raw) - known)
        missing = sorted({"file", "inputs", "max_length", "padding", "pad_id"} - set(raw))
        if unknown or missing:
            what = "; ".join(
                part
                for part in (
                    f"unknown field(s) {', '.join(unknown)}: upgrade xmodal" if unknown else "",
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                )
                if part
            )
            raise ModelLoadError(f"bad tokenizer spec: {what}")
        inputs = raw["inputs"]
        if (
            not isinstance(inputs, (list, tuple))
            or not inputs
            or any(n not in INPUT_NAMES for n in inputs)
            or len(set(inputs)) != len(inputs)
        ):
            raise ModelLoadError(
                f"bad tokenizer spec: inputs {inputs!r} must be distinct names from "
                f"{', '.join(INPUT_NAMES)}"
            )
        for key in ("max_length", "pad_id"):
            value = raw[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < (key != "pad_id"):
                raise ModelLoadError(f"bad tokenizer spec: {key} {value!r} is not a valid count")
        if raw["padding"] not in PADDINGS:
            raise ModelLoadError(
                f"bad tokenizer spec: padding {raw['padding']!r} is not one of "
                f"{', '.join(PADDINGS)}"
            )
        clean = raw.get("clean")
        if clean is not None and clean not in CLEANS:
            raise ModelLoadError(
                f"bad tokenizer spec: clean {clean!r} is not one of {', '.join(CLEANS)}: "
                "upgrade xmodal"
            )
        file = raw["file"]
        if not isinstance(file, str) or not file or Path(file).name != file:
            raise ModelLoadError(f"bad tokenizer spec: file {file!r} must be a plain file name")
        return cls(file, tuple(inputs), raw["max_length"], raw["padding"], raw["pad_id"], clean)


class TextTokenizer:
    """texts -> {feed name: int64 (n, t)}, as spec says; t is max_length or the longest text."""

    def __init__(self, folder: Path, spec: TokenizerSpec):
        from tokenizers import Tokenizer

        path = Path(folder) / spec.file
        if not path.is_file():
            raise ModelLoadError(f"the tokenizer file {path} is missing: export the model again")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for any unreadable file
            raise ModelLoadError(f"cannot read the tokenizer file {path}: {e}") from e
        if spec.pad_id >= tokenizer.get_vocab_size(with_added_tokens=True):
            raise ModelLoadError(
                f"{path}: pad id {spec.pad_id} is outside its vocabulary of "
                f"{tokenizer.get_vocab_size(with_added_tokens=True)} tokens"
            )
        # The spec, not the file, says how to truncate and pad.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(spec.max_length)
        pad_token = tokenizer.id_to_token(spec.pad_id) or "<pad>"
        length = spec.max_length if spec.padding == "max_length" else None
        tokenizer.enable_padding(pad_id=spec.pad_id, pad_token=pad_token, length=length)
        self.spec = spec
        self._tokenizer = tokenizer
        self._clean = _CLEANERS[spec.clean] if spec.clean else None

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._clean is not None:
            texts = [self._clean(t) for t in texts]
        encodings = self._tokenizer.encode_batch(list(texts))
        width = len(encodings[0].ids) if encodings else 0
        columns = {
            "input_ids": lambda e: e.ids,
            "attention_mask": lambda e: e.attention_mask,
            "token_type_ids": lambda e: e.type_ids,
        }
        return {
            name: np.array([columns[name](e) for e in encodings], dtype=np.int64).reshape(
                len(encodings), width
            )
            for name in self.spec.inputs
        }


# -- open_clip's text clean-up without ftfy ---------------------------------------------------


def _fix_table() -> dict[int, str | None]:
    """One str.translate table for the character-level fixes of ftfy.fix_text."""
    table: dict[int, str | None] = {}
    # C1 controls are what a Windows-1252 byte became when read as Latin-1; browsers read them
    # as Windows-1252, and so does ftfy (bytes that code page leaves undefined stay as they are).
    for code in range(0x80, 0xA0):
        with contextlib.suppress(UnicodeDecodeError):
            table[code] = bytes([code]).decode("cp1252")
    # Latin ligatures and legacy digraphs, taken apart (æ and œ are meant, and kept).
    for ch in "ĲĳŉǱǲǳǄǅǆǇǈǉǊǋǌﬀﬁﬂﬃﬄﬅﬆ":
        table[ord(ch)] = unicodedata.normalize("NFKC", ch)
    table[ord("ŉ")] = "\u02bcn"  # ftfy's choice; NFKC would make the apostrophe straight
    table[ord("ﬅ")] = "ſt"  # ftfy keeps the long s
    # Full- and half-width forms as their usual characters; the ideographic space as a space.
    table[0x3000] = " "
    for code in range(0xFF01, 0xFFF0):
        usual = unicodedata.normalize("NFKC", chr(code))
        if usual != chr(code):
            table[code] = usual
    # Curly quotes as straight ones.
    for code in [0x02BC, *range(0x2018, 0x201C)]:
        table[code] = "'"
    for code in range(0x201C, 0x2020):
        table[code] = '"'
    # Control characters nobody means to type (whitespace ones stay, and become spaces later);
    # ESC goes after the terminal escapes it starts.
    for code in [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F]:
        table[code] = None
    for code in [*range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)]:
        table[code] = None
    return table


_FIXES = _fix_table()
_ANSI = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _fix_once(text: str, unescape: bool) -> str:
    if unescape:
        text = html.unescape(text)
    text = text.translate(_FIXES)
    text = _LINE_BREAKS.sub("\n", text)
    text = _ANSI.sub("", text).replace("\x1b", "")
    if _SURROGATE.search(text):  # paired ones joined, lone ones replaced, as ftfy does
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return unicodedata.normalize("NFC", text)


def _fix_text(text: str) -> str:
    """ftfy.fix_text without its mojibake repair, then open_clip's double HTML unescape."""
    # ftfy fixes line by line, and from the first line that looks like HTML (has a "<") on it
    # leaves entities alone.
    lines = text.split("\n")
    unescape = True
    fixed_lines = []
    for i, line in enumerate(lines):
        line += "\n" if i < len(lines) - 1 else ""
        unescape = unescape and "<" not in line
        for _ in range(8):  # to a fixed point, as ftfy does; two rounds almost always suffice
            fixed = _fix_once(line, unescape)
            if fixed == line:
                break
            line = fixed
        fixed_lines.append(line)
    return html.unescape(html.unescape("".join(fixed_lines))).strip()


def _whitespace(text: str) -> str:
    return " ".join(text.split())


def _clean_lower(text: str) -> str:
    return _whitespace(_fix_text(text)).lower()


def _clean_whitespace(text: str) -> str:
    return _whitespace(_fix_text(text))


def _clean_canonicalize(text: str) -> str:
    # big_vision's canonical text: no ASCII punctuation, lower case, single spaces.
    text = _fix_text(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return _whitespace(text)


_CLEANERS = {
    "lower": _clean_lower,
    "whitespace": _clean_whitespace,
    "canonicalize": _clean_canonicalize,
}
