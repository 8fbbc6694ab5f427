"""Captions of the toy world in GenEval-like categories, their specs, the training sampler and the
builtin evaluation set.

Prompt spec (the ``"spec"`` of a bench prompt file line ``{"prompt", "category", "spec"}``)::

    {"objects":  [{"color": "red", "shape": "circle"}, ...],   # the full multiset that must be in the image
     "relation": {"type": "left_of"|"right_of"|"above"|"below",
                  "subject": i, "reference": j} | null,          # indices into "objects"
     "count":    n | null}                                      # counting prompts only (informational)

Colours: red, green, blue, yellow. Shapes: circle, square, triangle. An image satisfies a spec when the
multiset of detected (colour, shape) equals ``objects`` exactly (nothing missing, nothing extra) and, if a
relation is given, the subject's centroid is on the named side of the reference's (see ``checker.py``).

Categories (``CATEGORIES``), each with its caption form:

* ``single_object`` — "a red circle": one object.
* ``counting``      — "one|two|three green triangles": n identical objects, n in 1..3.
* ``two_object``    — "a red circle and a blue square": two objects of *different shapes* (any colours).
* ``position``      — "a red circle left of|right of|above|below a blue square": two distinct objects,
                      centres ≥ 8 px apart on the named axis in true renders.
* ``color_attr``    — "a blue circle and a yellow circle": two objects of the *same shape* in different
                      colours, so the only thing distinguishing them is which colour binds to which object
                      (disjoint from ``two_object``, whose shapes differ).

Hard tier: the colour–shape pairs in ``HELD_OUT`` never appear in multi-object training captions
(``two_object``, ``position``, ``color_attr``); they do appear alone (``single_object``, ``counting``).
Evaluation entries of a multi-object category that contain such a pair have ``"tier": "held_out"``.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

from ...errors import echo
from .render import COLORS, RELATIONS, SHAPES

CATEGORIES = ("single_object", "counting", "two_object", "position", "color_attr")
MULTI_OBJECT = ("two_object", "position", "color_attr")
HELD_OUT = (("blue", "triangle"), ("yellow", "square"), ("green", "circle"))
NUMBERS = ("one", "two", "three")
RELATION_WORDS = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below"}
# Training mixture over categories (position and the two-object forms are the hard, frequent ones).
TRAIN_MIX = {"single_object": 0.12, "counting": 0.22, "two_object": 0.22, "position": 0.24, "color_attr": 0.20}
EVAL_HELD_OUT_PER_CATEGORY = 20  # of the 100 entries of each multi-object category


def _noun(shape: str, n: int = 1) -> str:
    return shape if n == 1 else shape + "s"


def _obj(color: str, shape: str) -> dict:
    return {"color": color, "shape": shape}


def caption(spec: dict) -> str:
    """The canonical caption of a spec (inverse of :func:`parse`)."""
    objs = spec["objects"]
    rel = spec.get("relation")
    if spec.get("count") is not None:
        n, o = spec["count"], objs[0]
        return f"{NUMBERS[n - 1]} {o['color']} {_noun(o['shape'], n)}"
    if rel is not None:
        s, r = objs[rel["subject"]], objs[rel["reference"]]
        return f"a {s['color']} {s['shape']} {RELATION_WORDS[rel['type']]} a {r['color']} {r['shape']}"
    return " and ".join(f"a {o['color']} {o['shape']}" for o in objs)


def category_of(spec: dict) -> str:
    objs = spec["objects"]
    if spec.get("count") is not None:
        return "counting"
    if spec.get("relation") is not None:
        return "position"
    if len(objs) == 1:
        return "single_object"
    if len(objs) == 2 and objs[0]["shape"] == objs[1]["shape"] and objs[0]["color"] != objs[1]["color"]:
        return "color_attr"
    return "two_object"


def is_held_out(spec: dict) -> bool:
    """True for a multi-object spec that contains a held-out colour–shape pair (the hard tier)."""
    if category_of(spec) not in MULTI_OBJECT:
        return False
    return any((o["color"], o["shape"]) in HELD_OUT for o in spec["objects"])


_ONE = r"a (\w+) (\w+)"
_REL = "|".join(w.replace(" ", r"\s") for w in RELATION_WORDS.values())


_FORMS = ("Accepted forms: 'a red circle', 'two green triangles' (one|two|three), 'a red circle and a blue "
          "square', 'a red circle left of|right of|above|below a blue square'; colours "
          f"{', '.join(COLORS)}; shapes {', '.join(SHAPES)}")


def parse(text: str) -> dict:
    """Caption → spec. Raises ValueError naming the accepted forms when the caption is not one of them."""
    t = " ".join(text.lower().strip().rstrip(".").split())
    m = re.fullmatch(r"(one|two|three) (\w+) (\w+)", t)
    if m:
        n = NUMBERS.index(m[1]) + 1
        shape = m[3][:-1] if n > 1 and m[3].endswith("s") else m[3]
        spec = {"objects": [_obj(m[2], shape) for _ in range(n)], "relation": None, "count": n}
    elif m := re.fullmatch(f"{_ONE} ({_REL}) {_ONE}", t):
        kind = {v: k for k, v in RELATION_WORDS.items()}[m[3]]
        spec = {"objects": [_obj(m[1], m[2]), _obj(m[4], m[5])],
                "relation": {"type": kind, "subject": 0, "reference": 1}, "count": None}
    elif m := re.fullmatch(f"{_ONE} and {_ONE}", t):
        spec = {"objects": [_obj(m[1], m[2]), _obj(m[3], m[4])], "relation": None, "count": None}
    elif m := re.fullmatch(_ONE, t):
        spec = {"objects": [_obj(m[1], m[2])], "relation": None, "count": None}
    else:
        raise ValueError(f"caption {echo(text)} is not in the toy-shapes language. {_FORMS}")
    try:
        validate_spec(spec)
    except ValueError as exc:
        raise ValueError(f"caption {echo(text)}: {exc}. {_FORMS}") from None
    return spec


def validate_spec(spec: dict) -> None:
    """Raise ValueError naming the problem if ``spec`` is not a valid toy spec."""
    if not isinstance(spec, dict) or not isinstance(spec.get("objects"), list) or not spec["objects"]:
        raise ValueError(f"spec {echo(spec)} needs a non-empty list 'objects' of {{'color', 'shape'}}")
    if len(spec["objects"]) > 3:
        raise ValueError(f"spec has {len(spec['objects'])} objects; the toy world holds at most 3")
    for o in spec["objects"]:
        if not isinstance(o, dict) or o.get("color") not in COLORS or o.get("shape") not in SHAPES:
            raise ValueError(f"spec object {echo(o)} needs 'color' in {COLORS} and 'shape' in {SHAPES}")
    rel = spec.get("relation")
    if rel is not None:
        n = len(spec["objects"])
        if (not isinstance(rel, dict) or rel.get("type") not in RELATIONS
                or rel.get("subject") not in range(n) or rel.get("reference") not in range(n)
                or rel["subject"] == rel["reference"]):
            raise ValueError(f"spec relation {echo(rel)} needs 'type' in {RELATIONS} and distinct 'subject', "
                             f"'reference' indices into objects (0..{n - 1})")
    count = spec.get("count")
    if count is not None and (count != len(spec["objects"])
                              or any(o != spec["objects"][0] for o in spec["objects"])):
        raise ValueError(f"spec count {echo(count)} must equal the number of (identical) objects")


# ---------------------------------------------------------------- enumeration and sampling

def all_specs(category: str) -> list[dict]:
    """Every distinct spec of a category, in a fixed order."""
    pairs = [(c, s) for s in SHAPES for c in COLORS]
    if category == "single_object":
        return [{"objects": [_obj(c, s)], "relation": None, "count": None} for c, s in pairs]
    if category == "counting":
        return [{"objects": [_obj(c, s) for _ in range(n)], "relation": None, "count": n}
                for n in (1, 2, 3) for c, s in pairs]
    if category == "two_object":
        return [{"objects": [_obj(*a), _obj(*b)], "relation": None, "count": None}
                for a, b in itertools.permutations(pairs, 2) if a[1] != b[1]]
    if category == "color_attr":
        return [{"objects": [_obj(*a), _obj(*b)], "relation": None, "count": None}
                for a, b in itertools.permutations(pairs, 2) if a[1] == b[1]]
    if category == "position":
        return [{"objects": [_obj(*a), _obj(*b)], "relation": {"type": r, "subject": 0, "reference": 1},
                 "count": None}
                for r in RELATIONS for a, b in itertools.permutations(pairs, 2)]
    raise ValueError(f"unknown category {echo(category)}: allowed {CATEGORIES}")


_TRAIN_POOLS = {c: [s for s in all_specs(c) if not is_held_out(s)] for c in CATEGORIES}


def sample_train_spec(rng: np.random.Generator) -> dict:
    """A training spec: categories by ``TRAIN_MIX``, held-out pairs never in multi-object captions."""
    cats = list(TRAIN_MIX)
    cat = cats[rng.choice(len(cats), p=np.array([TRAIN_MIX[c] for c in cats]))]
    pool = _TRAIN_POOLS[cat]
    return pool[rng.integers(len(pool))]


def builtin_eval(per_category: int = 100, seed: int = 1234) -> list[dict]:
    """The builtin evaluation set: ``per_category`` entries per category, fixed by ``seed``.

    Entries: ``{"id", "prompt", "category", "tier", "spec"}``. Categories with fewer distinct captions than
    ``per_category`` repeat them evenly (a repeated caption is a different sample: seed by the entry index).
    Each multi-object category holds ``EVAL_HELD_OUT_PER_CATEGORY`` held-out entries (scaled to the size).
    """
    rng = np.random.default_rng(seed)
    out = []
    for cat in CATEGORIES:
        specs = all_specs(cat)
        n_hard = round(EVAL_HELD_OUT_PER_CATEGORY * per_category / 100) if cat in MULTI_OBJECT else 0
        out += _entries(cat, specs, per_category, n_hard, rng, "")
    return out


def _entries(category: str, specs: list[dict], size: int, n_hard: int, rng: np.random.Generator,
             prefix: str) -> list[dict]:
    """``size`` evaluation entries of one category drawn evenly from ``specs``, ``n_hard`` of them with a
    held-out pair for a multi-object category (seen ones first: the builtin split's order of draws)."""
    if category in MULTI_OBJECT:
        seen = [s for s in specs if not is_held_out(s)]
        hard = [s for s in specs if is_held_out(s)]
        chosen = _even_draw(seen, size - n_hard, rng) + _even_draw(hard, n_hard, rng)
    else:
        chosen = _even_draw(specs, size, rng)
    return [{"id": f"{prefix}{category}-{i:03d}", "prompt": caption(spec), "category": category,
             "tier": "held_out" if is_held_out(spec) else "seen", "spec": spec} for i, spec in enumerate(chosen)]


# ---------------------------------------------------------------- the held-out evaluation split

SPLITS = ("builtin", "heldout")
BUILTIN_SIZES = (60, 100)
"""The per-category sizes the builtin split has been run at (docs/bench_toy: 60; the bench's default: 100):
its captions are the development set."""
SEED_BASE = {"builtin": 0, "heldout": 1_000_000_007}
"""Added to every bench sampling seed of a split: the held-out split never reuses a builtin random stream."""
HELDOUT_SIZE = {"single_object": 30, "counting": 40, "two_object": 50, "position": 70, "color_attr": 60}
HELDOUT_HARD = {"two_object": 50, "position": 35, "color_attr": 30}
"""Held-out-pair entries per multi-object category: half or more (the builtin split has a fifth)."""


def builtin_captions() -> dict[str, set[str]]:
    """Every caption of the builtin split at the sizes it has been run at, by category."""
    out: dict[str, set[str]] = {c: set() for c in CATEGORIES}
    for size in BUILTIN_SIZES:
        for e in builtin_eval(size):
            out[e["category"]].add(e["prompt"])
    return out


def heldout_eval(seed: int = 4321) -> list[dict]:
    """The held-out evaluation split: 250 entries (``HELDOUT_SIZE``), for confirmation only.

    Disjoint from the builtin split by sampling seed everywhere (``SEED_BASE``) and by caption for
    ``two_object`` and ``position``, whose unused captions suffice; the other categories have every caption
    in the builtin split already. Multi-object entries with a held-out colour–shape pair make up
    ``HELDOUT_HARD`` of their category (every unused ``two_object`` caption has one)."""
    rng = np.random.default_rng(seed)
    used = builtin_captions()
    out = []
    for cat in CATEGORIES:
        specs = all_specs(cat)
        if cat in ("two_object", "position"):
            specs = [s for s in specs if caption(s) not in used[cat]]
        out += _entries(cat, specs, HELDOUT_SIZE[cat], HELDOUT_HARD.get(cat, 0), rng, "heldout-")
    return out


def builtin_overlap(entries: list[dict]) -> dict[str, int]:
    """How many ``entries`` share a caption with the builtin split, by category (categories with none left
    out): figures on such entries measure the development set, not a held-out one."""
    used = set().union(*builtin_captions().values())
    counts: dict[str, int] = {}
    for e in entries:
        if " ".join(e["prompt"].lower().split()) in used:
            counts[e.get("category", "uncategorised")] = counts.get(e.get("category", "uncategorised"), 0) + 1
    return counts


def _even_draw(pool: list[dict], k: int, rng: np.random.Generator) -> list[dict]:
    # Whole shuffled passes over the pool, then a random remainder: every caption appears ⌊k/n⌋ or ⌈k/n⌉ times.
    out: list[dict] = []
    while len(out) < k:
        order = rng.permutation(len(pool))
        out.extend(pool[i] for i in order[: k - len(out)])
    return out


def with_specs(lines: list[tuple[int, dict]], path) -> list[dict]:
    """Prompt entries ``(line number, object)`` with their toy specs validated and a category and id set."""
    entries = []
    for n, e in lines:
        if e.get("spec") is not None:
            try:
                validate_spec(e["spec"])
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
        e.setdefault("category", category_of(e["spec"]) if e.get("spec") else "uncategorised")
        if not isinstance(e["category"], str) or not e["category"].strip():
            raise ValueError(f"{path}:{n}: 'category' must be a non-empty text (e.g. \"counting\"), got "
                             f"{echo(e['category'])}")
        e.setdefault("id", f"line-{n}")
        entries.append(e)
    return entries


def save_jsonl(entries: list[dict], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(e) + "\n" for e in entries))
