"""Moderation policies: categories of concern, each described by text prompts and a threshold.

A policy file (TOML, or YAML when PyYAML is installed):

    nsfw_threshold = 0.8            # optional: open_nsfw's score at which "sexual" is flagged
    [categories.weapons]
    prompts = ["a photo of a gun", "a rifle"]
    threshold = 0.5
    [neutral]                       # optional: what "nothing of concern" looks like
    prompts = ["an ordinary photo", "a landscape"]
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from xmodal.errors import InvalidInputError, MissingDataError, MissingExtraError

DEFAULT_NEUTRAL = (
    "an ordinary photo",
    "a harmless everyday object",
    "a landscape",
    "an animal",
    "food on a plate",
    "a plant",
)
DEFAULT_THRESHOLD = 0.5
DEFAULT_NSFW_THRESHOLD = 0.8
# The category the open_nsfw score is combined with, when a policy has it.
SEXUAL = "sexual"
_TOP_KEYS = frozenset({"categories", "neutral", "nsfw_threshold"})
_CATEGORY_KEYS = frozenset({"prompts", "threshold"})


@dataclass(frozen=True)
class Category:
    name: str
    prompts: tuple[str, ...]
    threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Policy:
    categories: tuple[Category, ...]
    neutral_prompts: tuple[str, ...] = DEFAULT_NEUTRAL
    nsfw_threshold: float = DEFAULT_NSFW_THRESHOLD
    source: str = field(default="<policy>", compare=False)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise InvalidInputError(f"policy {self.source} has no category {name!r}")

    def fingerprint(self, model_name: str) -> str:
        """A short hash of everything a verdict depends on: the policy's content and the model
        that embeds its prompts. A stored verdict under another fingerprint is stale."""
        content = {
            "model": model_name,
            "nsfw_threshold": self.nsfw_threshold,
            "neutral": list(self.neutral_prompts),
            "categories": [[c.name, list(c.prompts), c.threshold] for c in self.categories],
        }
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]


def load_policy(path: str | os.PathLike | None = None) -> Policy:
    """Read a policy file; None reads the packaged default (default_categories.toml)."""
    if path is None:
        text = resources.files("xmodal.moderation").joinpath("default_categories.toml")
        return parse_policy(tomllib.loads(text.read_text("utf-8")), "default policy")
    name = os.fspath(path)
    try:
        with open(name, "rb") as fp:
            raw = fp.read()
    except FileNotFoundError:
        raise MissingDataError(f"category file not found: {name}") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read category file {name}: {e.strerror or e}") from None
    if name.lower().endswith((".yaml", ".yml")):
        return parse_policy(_yaml(raw, name), name)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InvalidInputError(f"{name}: not a valid TOML category file: {e}") from None
    return parse_policy(data, name)


def _yaml(raw: bytes, name: str) -> Any:
    try:
        import yaml
    except ImportError as e:
        raise MissingExtraError("YAML category files", None, "yaml", "PyYAML") from e
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise InvalidInputError(f"{name}: not a valid YAML category file: {e}") from None


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """A policy from parsed TOML/YAML; InvalidInputError names the first problem found."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a table of categories at the top level")
    _no_unknown(data, _TOP_KEYS, source, "top level")
    cats = data.get("categories")
    if not isinstance(cats, dict) or not cats:
        raise InvalidInputError(f"{source}: no [categories.NAME] tables: give at least one")
    categories = []
    for name, body in cats.items():
        where = f"{source}: category {name!r}"
        if not str(name).strip():
            raise InvalidInputError(f"{source}: a category has an empty name")
        if not isinstance(body, dict):
            raise InvalidInputError(f"{where} must be a table with prompts and a threshold")
        _no_unknown(body, _CATEGORY_KEYS, source, f"category {name!r}")
        prompts = _prompts(body.get("prompts"), where)
        threshold = _fraction(body.get("threshold", DEFAULT_THRESHOLD), f"{where}: threshold")
        categories.append(Category(str(name), prompts, threshold))
    neutral = DEFAULT_NEUTRAL
    if "neutral" in data:
        body = data["neutral"]
        if not isinstance(body, dict):
            raise InvalidInputError(f"{source}: [neutral] must be a table with prompts")
        _no_unknown(body, frozenset({"prompts"}), source, "[neutral]")
        neutral = _prompts(body.get("prompts"), f"{source}: [neutral]")
    nsfw = _fraction(
        data.get("nsfw_threshold", DEFAULT_NSFW_THRESHOLD), f"{source}: nsfw_threshold"
    )
    return Policy(tuple(categories), neutral, nsfw, source)


def _no_unknown(table: dict, allowed: frozenset[str], source: str, where: str) -> None:
    unknown = sorted(str(k) for k in table if k not in allowed)
    if unknown:
        raise InvalidInputError(
            f"{source}: unknown key(s) {', '.join(unknown)} in {where} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def _prompts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        raise InvalidInputError(f"{where}: missing prompts (a list of texts)")
    if isinstance(value, str) or not isinstance(value, list):
        raise InvalidInputError(f"{where}: prompts must be a list of texts")
    prompts = []
    for p in value:
        if not isinstance(p, str) or not p.strip():
            raise InvalidInputError(f"{where}: every prompt must be a non-empty text, got {p!r}")
        if p.strip() not in prompts:
            prompts.append(p.strip())
    if not prompts:
        raise InvalidInputError(f"{where}: prompts is empty: give at least one")
    return tuple(prompts)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{where} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{where} must be in [0, 1], got {value}")
    return float(value)
