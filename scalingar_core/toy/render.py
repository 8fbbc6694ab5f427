"""Procedural scenes of coloured shapes on white: the toy world's ground truth.

A *scene* is a plain dict::

    {"size": 32, "objects": [{"color": "red", "shape": "circle", "size": 8, "x": 4, "y": 12}, ...]}

``x``/``y`` are the top-left corner of the object's ``size``×``size`` box (column, row). Corners are snapped
to a ``SNAP`` = 4 px grid, object sizes are 8, 9 or 10 px and boxes are ≥ ``MIN_GAP`` = 2 px apart, so every
4×4 patch of an image holds at most one object, aligned to that object's box. That keeps the set of patches
small and enumerable (see ``tokenizer.py``: the patch codebook is exactly lossless).

``render(scene)`` → ``uint8 [32, 32, 3]``. ``sample_scene(spec, rng)`` places the objects of a prompt spec
(see ``prompts.py``) at random, honouring its relation. Everything is a pure function of the seed/rng.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

IMAGE_SIZE = 32
SNAP = 4
MIN_GAP = 2
SIZES = (8, 9, 10)
BACKGROUND = (255, 255, 255)
PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 170, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 210, 0),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
# Position prompts keep the two centres at least this far apart on the named axis.
RELATION_MIN_SEPARATION = 8
RELATIONS = ("left_of", "right_of", "above", "below")


@lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean ``[size, size]`` mask whose bounding box is the full box (the checker relies on that)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: allowed {SHAPES}")
    if size not in SIZES:
        raise ValueError(f"unsupported object size {size}: allowed {SIZES}")
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    c = size / 2
    if shape == "square":
        m = np.ones((size, size), bool)
    elif shape == "circle":
        m = (x - c) ** 2 + (y - c) ** 2 <= c * c
    else:  # isosceles triangle, apex up; half-width grows half a pixel per row so the base fills the box
        m = np.abs(x - c) <= (np.arange(size)[:, None] + 1) / 2
    m = np.ascontiguousarray(m)
    m.setflags(write=False)
    return m


def _check_object(obj: dict) -> None:
    for key in ("color", "shape", "size", "x", "y"):
        if key not in obj:
            raise ValueError(f"scene object {obj!r} lacks key {key!r} (needs color, shape, size, x, y)")
    if obj["color"] not in PALETTE:
        raise ValueError(f"unknown colour {obj['color']!r}: allowed {COLORS}")
    shape_mask(obj["shape"], obj["size"])  # validates shape and size
    s, x, y = obj["size"], obj["x"], obj["y"]
    if not (0 <= x <= IMAGE_SIZE - s and 0 <= y <= IMAGE_SIZE - s):
        raise ValueError(f"object {obj!r} does not fit in the {IMAGE_SIZE}px image")


def render(scene: dict) -> np.ndarray:
    """Scene dict → ``uint8 [H, W, 3]`` RGB image (white background, exact palette colours)."""
    size = scene.get("size", IMAGE_SIZE)
    if size != IMAGE_SIZE:
        raise ValueError(f"scene size {size} unsupported: the toy world is {IMAGE_SIZE}px")
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    for obj in scene["objects"]:
        _check_object(obj)
        s, x, y = obj["size"], obj["x"], obj["y"]
        region = img[y:y + s, x:x + s]
        region[shape_mask(obj["shape"], s)] = PALETTE[obj["color"]]
    return img


def box_gap(a: dict, b: dict) -> int:
    """Chebyshev gap in pixels between two object boxes (0 = touching or overlapping)."""
    gx = max(a["x"] - (b["x"] + b["size"]), b["x"] - (a["x"] + a["size"]))
    gy = max(a["y"] - (b["y"] + b["size"]), b["y"] - (a["y"] + a["size"]))
    return max(gx, gy, 0)


def centre(obj: dict) -> tuple[float, float]:
    """(x, y) of the box centre, in pixels."""
    return obj["x"] + obj["size"] / 2, obj["y"] + obj["size"] / 2


def relation_holds(kind: str, subject: dict, reference: dict, margin: float) -> bool:
    """Does ``subject`` stand ``kind`` (e.g. "left_of") ``reference`` by at least ``margin`` px?"""
    (sx, sy), (rx, ry) = centre(subject), centre(reference)
    delta = {"left_of": rx - sx, "right_of": sx - rx, "above": ry - sy, "below": sy - ry}
    if kind not in delta:
        raise ValueError(f"unknown relation {kind!r}: allowed {RELATIONS}")
    return delta[kind] >= margin


def sample_scene(spec: dict, rng: np.random.Generator, max_tries: int = 1000) -> dict:
    """Place the objects of a prompt spec at random (snapped corners, gaps, relation respected)."""
    objects = spec["objects"]
    relation = spec.get("relation")
    for _ in range(max_tries):
        placed: list[dict] = []
        for o in objects:
            s = int(rng.choice(SIZES))
            corners = np.arange(0, IMAGE_SIZE - s + 1, SNAP)
            cand = {"color": o["color"], "shape": o["shape"], "size": s,
                    "x": int(rng.choice(corners)), "y": int(rng.choice(corners))}
            if any(box_gap(cand, p) < MIN_GAP for p in placed):
                break
            placed.append(cand)
        else:
            if relation is None or relation_holds(relation["type"], placed[relation["subject"]],
                                                  placed[relation["reference"]], RELATION_MIN_SEPARATION):
                return {"size": IMAGE_SIZE, "objects": placed}
    raise RuntimeError(f"could not place {spec!r} in {max_tries} tries")


def render_spec(spec: dict, seed: int) -> tuple[dict, np.ndarray]:
    """Deterministic convenience: (scene, image) for a prompt spec and an integer seed."""
    scene = sample_scene(spec, np.random.default_rng(seed))
    return scene, render(scene)
