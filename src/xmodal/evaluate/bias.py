"""Association (bias) probes: WEAT effect sizes for any encoder, on words and on images.

WEAT (Caliskan et al. 2017, "Semantics derived automatically from language corpora contain
human-like biases") asks whether two groups of targets X and Y (flowers and insects, male and
female names) sit closer to one set of attribute words A (pleasant) than to another B
(unpleasant). For one target w:

    s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)
    d = (mean_x s(x) - mean_y s(y)) / std_{w in X∪Y} s(w)       (sample std, ddof=1)

d > 0: X leans towards A and Y towards B. The p-value is one-sided: the share of re-partitions
of X∪Y into groups of the original sizes whose difference of mean s is at least the observed
one. Every partition is counted (`exact`) when there are at most
max(EXACT_PARTITIONS, permutations) of them, else `permutations` random ones with a seed, and
then p = (1 + hits) / (1 + permutations) so it is never 0.

Two forms: "text" embeds word targets with encoder.embed_texts; "image" embeds target images with
encoder.embed_images (attributes stay words). The image form runs only for tests that give
target images, and only on an encoder with the image modality.

A probe file (TOML):

    name = "my probe"                      # optional: the file's stem by default
    description = "what it measures"       # optional

    [[test]]
    name = "flowers vs insects / pleasant vs unpleasant"
    # Two target groups X, Y (their names are yours), two words or more each:
    targets = { flowers = ["rose", "tulip"], insects = ["ant", "wasp"] }
    # Optional: the same two groups as images. Paths or globs (*, ?, [...]); relative ones
    # resolve from the probe file's folder.
    target_images = { flowers = ["img/rose.png"], insects = ["img/bugs/*.png"] }
    images_optional = false                # optional: true drops the image form, with a reason,
                                           # when an image path is missing instead of failing
    # Two attribute groups A, B, two words or more each:
    attributes = { pleasant = ["love", "peace"], unpleasant = ["filth", "grief"] }

A test needs `attributes` and `targets`, `target_images` or both; when it has both, their group
names must be the same. `load_probe("default")` reads the probe shipped in probes/default.toml.
"""

from __future__ import annotations

import glob
import math
import os
import tomllib
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import InvalidInputError, MissingDataError, MissingExtraError
from xmodal.models.base import IMAGE, l2_normalize

PROBES_DIR = Path(__file__).parent / "probes"
# Up to this many re-partitions the p-value counts them all: cheap at these sizes (8 + 8
# targets: 12,870) and free of sampling noise.
EXACT_PARTITIONS = 100_000
# Below 2 items a group has no spread and a permutation test almost nothing to permute.
MIN_ITEMS = 2
_TEST_KEYS = frozenset({"name", "targets", "target_images", "images_optional", "attributes"})
_TOP_KEYS = frozenset({"name", "description", "test"})
# Two differences of mean cosines closer than this are a tie, not an exceedance.
_TIE = 1e-9


@dataclass(frozen=True)
class Group:
    name: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class ProbeTest:
    name: str
    attributes: tuple[Group, Group]
    targets: tuple[Group, Group] | None = None
    # Absolute paths, globs expanded.
    target_images: tuple[Group, Group] | None = None
    # Why the image form was dropped (images_optional with paths missing), else None.
    images_skipped: str | None = None


@dataclass(frozen=True)
class Probe:
    name: str
    source: str
    tests: tuple[ProbeTest, ...]
    description: str = ""


@dataclass(frozen=True)
class WeatResult:
    effect_size: float
    p_value: float
    mean_x: float
    mean_y: float
    n_x: int
    n_y: int
    n_a: int
    n_b: int
    exact: bool
    partitions: int


# -- probe files --------------------------------------------------------------------------------


def load_probe(path: str | os.PathLike) -> Probe:
    """Read a probe file, or the shipped one by its name ("default")."""
    name = os.fspath(path)
    shipped = PROBES_DIR / f"{name}.toml"
    if os.sep not in name and "/" not in name and shipped.is_file():
        name = str(shipped)
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise MissingDataError(f"probe file not found: {name}") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read probe file {name}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InvalidInputError(f"{name}: not a valid TOML probe file: {e}") from None
    return parse_probe(data, name, base=Path(name).resolve().parent)


def parse_probe(data: Any, source: str = "<probe>", *, base: Path | None = None) -> Probe:
    """A probe from parsed TOML; relative image paths resolve from `base` (default: the current
    folder). InvalidInputError names the test and field of the first problem found."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a table at the top level")
    _no_unknown(data, _TOP_KEYS, f"{source}: top level")
    tests = data.get("test")
    if not isinstance(tests, list) or not tests:
        raise InvalidInputError(f"{source}: no [[test]] tables: give at least one")
    parsed = []
    seen: set[str] = set()
    for i, body in enumerate(tests, 1):
        test = _parse_test(body, f"{source}: test {i}", base or Path.cwd())
        if test.name in seen:
            raise InvalidInputError(f"{source}: two tests are named {test.name!r}")
        seen.add(test.name)
        parsed.append(test)
    name = _text(data.get("name", Path(source).stem), f"{source}: name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidInputError(f"{source}: description must be a string")
    return Probe(name, source, tuple(parsed), description)


def _parse_test(body: Any, where: str, base: Path) -> ProbeTest:
    if not isinstance(body, dict):
        raise InvalidInputError(f"{where} must be a table")
    if "name" not in body:
        raise InvalidInputError(f"{where}: missing key 'name'")
    name = _text(body["name"], f"{where}: name")
    where = f"{where.rsplit(': ', 1)[0]}: test {name!r}"
    _no_unknown(body, _TEST_KEYS, where)
    if "attributes" not in body:
        raise InvalidInputError(f"{where}: missing key 'attributes'")
    if "targets" not in body and "target_images" not in body:
        raise InvalidInputError(f"{where}: missing key 'targets' (or 'target_images')")
    attributes = _groups(body["attributes"], f"{where}: attributes")
    targets = _groups(body["targets"], f"{where}: targets") if "targets" in body else None
    optional = body.get("images_optional", False)
    if not isinstance(optional, bool):
        raise InvalidInputError(f"{where}: images_optional must be true or false")
    images, skipped = None, None
    if "target_images" in body:
        field = f"{where}: target_images"
        # One entry will do: a glob may stand for the whole group.
        declared = _groups(body["target_images"], field, min_items=1)
        if targets and [g.name for g in declared] != [g.name for g in targets]:
            raise InvalidInputError(
                f"{field}: groups {[g.name for g in declared]} differ from targets' "
                f"{[g.name for g in targets]}; name them the same, in the same order"
            )
        try:
            images = tuple(
                Group(g.name, _resolve(g.items, base, f"{field}.{g.name}")) for g in declared
            )
        except InvalidInputError as e:
            if not optional:
                raise
            skipped = str(e)
    return ProbeTest(name, attributes, targets, images, skipped)


def _groups(value: Any, field: str, min_items: int = MIN_ITEMS) -> tuple[Group, Group]:
    if not isinstance(value, dict) or len(value) != 2:
        got = f"{len(value)} groups" if isinstance(value, dict) else type(value).__name__
        raise InvalidInputError(f"{field}: expected a table of exactly two groups, got {got}")
    groups = []
    for name, items in value.items():
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise InvalidInputError(f"{field}.{name}: expected a list of strings")
        items = [s.strip() for s in items]
        if len([s for s in items if s]) < min_items or not all(items):
            raise InvalidInputError(
                f"{field}.{name}: give at least {min_items} non-empty entries, got "
                f"{len([s for s in items if s])}{' and blanks' if not all(items) else ''}"
            )
        groups.append(Group(str(name), tuple(items)))
    return groups[0], groups[1]


def _resolve(entries: tuple[str, ...], base: Path, field: str) -> tuple[str, ...]:
    """Paths and globs -> existing image files, absolute; a missing one fails naming it."""
    paths: list[str] = []
    for entry in entries:
        full = Path(entry).expanduser()
        full = full if full.is_absolute() else base / full
        if glob.has_magic(entry):
            matched = sorted(p for p in glob.glob(str(full)) if os.path.isfile(p))
            if not matched:
                raise InvalidInputError(f"{field}: no file matches {entry!r} (from {base})")
            paths += matched
        elif full.is_file():
            paths.append(str(full))
        else:
            raise InvalidInputError(f"{field}: image not found: {full}")
    if len(set(paths)) < MIN_ITEMS:
        raise InvalidInputError(f"{field}: give at least {MIN_ITEMS} distinct images")
    return tuple(dict.fromkeys(paths))


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{field} must be a non-empty string")
    return value.strip()


def _no_unknown(table: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


# -- the statistic ------------------------------------------------------------------------------


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for each row of w: mean cosine to A's rows minus mean cosine to B's."""
    w, a, b = (l2_normalize(np.atleast_2d(v)) for v in (w, a, b))
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def weat(
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    permutations: int = 10_000,
    seed: int = 0,
    exact_limit: int = EXACT_PARTITIONS,
) -> WeatResult:
    """Effect size and one-sided permutation p-value of targets x vs y on attributes a vs b
    (rows are vectors; cosines are taken, so they need not be unit length)."""
    n_x, n_y = len(x), len(y)
    if n_x < 1 or n_y < 1 or n_x + n_y < 3 or len(a) < 1 or len(b) < 1:
        raise InvalidInputError("WEAT needs 1+ vector per group and 3+ targets in all")
    if permutations < 1:
        raise InvalidInputError("permutations must be at least 1")
    s = association(np.concatenate([x, y]), a, b).astype(np.float64)
    n = n_x + n_y
    total = s.sum()

    def differences(sum_x: np.ndarray) -> np.ndarray:
        return sum_x / n_x - (total - sum_x) / n_y

    observed = float(differences(s[:n_x].sum()))
    std = float(s.std(ddof=1))
    count = math.comb(n, n_x)
    exact = count <= max(exact_limit, permutations)
    if exact:
        members = np.fromiter(
            (i for combo in combinations(range(n), n_x) for i in combo), dtype=np.intp
        ).reshape(count, n_x)
        hits = int((differences(s[members].sum(axis=1)) >= observed - _TIE).sum())
        p_value, partitions = hits / count, count
    else:
        rng = np.random.default_rng(seed)
        order = rng.permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)[:, :n_x]
        hits = int((differences(s[order].sum(axis=1)) >= observed - _TIE).sum())
        p_value, partitions = (1 + hits) / (1 + permutations), permutations
    return WeatResult(
        # All s equal: no spread and no difference, so no effect.
        effect_size=observed / std if std > 0 else 0.0,
        p_value=p_value,
        mean_x=float(s[:n_x].mean()),
        mean_y=float(s[n_x:].mean()),
        n_x=n_x,
        n_y=n_y,
        n_a=len(a),
        n_b=len(b),
        exact=exact,
        partitions=partitions,
    )


# -- running a probe ----------------------------------------------------------------------------


def run_probe(encoder, probe: Probe, *, permutations: int = 10_000, seed: int = 0) -> dict:
    """WEAT per test and form on `encoder`, as a JSON-able dict:

    {"probe", "source", "model", "permutations", "seed",
     "tests": [{"name", "targets": [X, Y], "attributes": [A, B],
                "forms": {"text": {...}, "image": {...} or {"skipped": reason}}}]}

    A form's figures: effect_size, p_value, exact, partitions, n_x, n_y, n_a, n_b and
    mean_association {X: mean s(x), Y: mean s(y)}.
    """
    has_images = IMAGE in encoder.modalities
    tests = []
    for test in probe.tests:
        a_group, b_group = test.attributes
        a = encoder.embed_texts(list(a_group.items))
        b = encoder.embed_texts(list(b_group.items))
        groups = test.targets or test.target_images
        forms: dict[str, dict] = {}
        if test.targets:
            x, y = (encoder.embed_texts(list(g.items)) for g in test.targets)
            forms["text"] = _form(weat(x, y, a, b, permutations=permutations, seed=seed), groups)
        if test.images_skipped:
            forms["image"] = {"skipped": test.images_skipped}
        elif test.target_images and not has_images:
            forms["image"] = {"skipped": f"{encoder.name} does not embed images"}
        elif test.target_images:
            x, y = (encoder.embed_images(list(g.items)) for g in test.target_images)
            forms["image"] = _form(weat(x, y, a, b, permutations=permutations, seed=seed), groups)
        tests.append(
            {
                "name": test.name,
                "targets": [g.name for g in groups],
                "attributes": [a_group.name, b_group.name],
                "forms": forms,
            }
        )
    return {
        "probe": probe.name,
        "source": probe.source,
        "model": encoder.name,
        "permutations": permutations,
        "seed": seed,
        "tests": tests,
    }


def _form(result: WeatResult, groups: tuple[Group, Group]) -> dict:
    return {
        "effect_size": result.effect_size,
        "p_value": result.p_value,
        "exact": result.exact,
        "partitions": result.partitions,
        "n_x": result.n_x,
        "n_y": result.n_y,
        "n_a": result.n_a,
        "n_b": result.n_b,
        "mean_association": {groups[0].name: result.mean_x, groups[1].name: result.mean_y},
    }


def result_rows(results: dict) -> list[tuple[str, str, dict]]:
    """(test name, form, figures) for each form that ran, in probe order."""
    return [
        (test["name"], form, figures)
        for test in results["tests"]
        for form, figures in test["forms"].items()
        if "skipped" not in figures
    ]


# -- the plot -----------------------------------------------------------------------------------


def plot_bias(results_by_model: dict[str, dict], path: str | os.PathLike) -> Path:
    """A bar chart of effect sizes: one group of bars per test and form, one bar per model, a
    star on each bar with p < 0.05. Returns the PNG's path."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError("xmodal eval --bias", "train", "matplotlib") from e
    labels: list[tuple[str, str]] = []
    for results in results_by_model.values():
        for name, form, _ in result_rows(results):
            if (name, form) not in labels:
                labels.append((name, form))
    models = list(results_by_model)
    widest = 2.0  # |d| stays under 2 when the two target groups are the same size
    height = 0.8 / max(len(models), 1)
    fig = Figure(figsize=(10, 1.2 + 0.45 * len(labels) * max(len(models), 2) / 2))
    ax = fig.subplots()
    for m, model in enumerate(models):
        figures = {(n, f): fig_ for n, f, fig_ in result_rows(results_by_model[model])}
        rows = [(i, figures[key]) for i, key in enumerate(labels) if key in figures]
        ys = [i - 0.4 + height * (m + 0.5) for i, _ in rows]
        ds = [f["effect_size"] for _, f in rows]
        widest = max(widest, *(abs(d) for d in ds)) if ds else widest
        bars = ax.barh(ys, ds, height=height * 0.9, label=model)
        significant = [(d, yy) for (_, f), d, yy in zip(rows, ds, ys) if f["p_value"] < 0.05]
        if significant:
            ax.scatter(
                [d + math.copysign(0.06, d) for d, _ in significant],
                [yy for _, yy in significant],
                marker="*",
                s=60,
                color=bars.patches[0].get_facecolor(),
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
    ax.set_yticks(range(len(labels)), [f"{name}\n({form})" for name, form in labels], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(-widest - 0.2, widest + 0.2)
    ax.set_xlabel("WEAT effect size d (★ one-sided permutation p < 0.05)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.set_layout_engine("constrained")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
