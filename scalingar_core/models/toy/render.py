"""Procedural scenes of coloured shapes on white: the toy worlds' ground truth.

A *scene* is a plain dict::

    {"size": 64, "objects": [{"color": "red", "shape": "circle", "size": 16, "x": 8, "y": 24}, ...]}

``size`` is the image side, which names the :class:`World` (``world_of_size``); ``x``/``y`` are the top-left
corner of an object's ``size``×``size`` box (column, row). Corners are snapped to the world's ``snap`` = 4 px
grid (the patch size of ``tokenizer.py``) and boxes keep ``min_gap`` px apart, so every 4×4 patch holds at
most one object, aligned to that object's box. That keeps the set of patches small and enumerable (the
patch codebook is exactly lossless).

Two worlds share captions, palette, shapes and the checker's rules, and differ only in scale:

* ``SMALL`` (``toy-shapes``): 32×32 px, objects of 8–10 px, an 8×8 = 64-token grid;
* ``LARGE`` (``toy-shapes-256``): 64×64 px, objects of 16 px, a 16×16 = 256-token grid — AR-GRPO-256's
  sequence length, the shortest regime the paper ran (W_0 = 32 steps, Δ_rec = 32 steps = 2 token rows).

``render(scene)`` → ``uint8 [S, S, 3]``. ``sample_scene(spec, rng, world)`` places the objects of a prompt
spec (see ``prompts.py``) at random, honouring its relation. Everything is a pure function of the seed/rng.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BACKGROUND = (255, 255, 255)
PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 170, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 210, 0),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left_of", "right_of", "above", "below")


@dataclass(frozen=True)
class World:
    """The geometry of one toy world and the checker's size thresholds that go with it."""

    name: str
    image_size: int
    sizes: tuple[int, ...]  # object box sides, px
    snap: int = 4  # corner grid = patch size
    min_gap: int = 2  # px between object boxes
    relation_min_separation: int = 8  # position prompts: centres at least this far apart on the named axis
    # checker (``checker.py``): components under min_pixels are noise; a shape's box sides lie in
    # [min_side, max_side] and differ by at most max_aspect_diff; a relation needs > relation_margin px
    min_pixels: int = 6
    min_side: int = 7
    max_side: int = 11
    max_aspect_diff: int = 1
    relation_margin: float = 3.0

    @property
    def grid(self) -> int:
        """Tokens per side."""
        return self.image_size // self.snap

    @property
    def tokens(self) -> int:
        return self.grid * self.grid


SMALL = World("toy-shapes", 32, (8, 9, 10))
# One object size: a shape is then a fixed 4×4-token template, so the model's open decisions are the
# semantic ones (which colour and shape, where, how many) at each object's first patch, not the outline.
# With 16–20 px objects a 45-minute CPU training stayed below 5 % first-sample accuracy (broken outlines).
LARGE = World("toy-shapes-256", 64, (16,), min_gap=4, relation_min_separation=16, min_pixels=24,
              min_side=14, max_side=18, max_aspect_diff=2, relation_margin=6.0)
WORLDS = {w.name: w for w in (SMALL, LARGE)}

# The small world's constants under their historical names.
IMAGE_SIZE, SNAP, MIN_GAP, SIZES = SMALL.image_size, SMALL.snap, SMALL.min_gap, SMALL.sizes
RELATION_MIN_SEPARATION = SMALL.relation_min_separation


def world_with(attribute: str, value: int) -> World:
    """The world whose ``attribute`` (``image_size``, ``tokens``) is ``value``."""
    for w in WORLDS.values():
        if getattr(w, attribute) == value:
            return w
    raise ValueError(f"no toy world has {attribute} {value}: known "
                     f"{', '.join(f'{getattr(w, attribute)} ({w.name})' for w in WORLDS.values())}")


def world_of_size(image_size: int) -> World:
    """The world whose images are ``image_size`` px square."""
    return world_with("image_size", image_size)


@lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean ``[size, size]`` mask whose bounding box is the full box (the checker relies on that)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: allowed {SHAPES}")
    if not (isinstance(size, int) and size >= 2):
        raise ValueError(f"object size {size!r} must be an integer >= 2")
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


def _check_object(obj: dict, world: World) -> None:
    for key in ("color", "shape", "size", "x", "y"):
        if key not in obj:
            raise ValueError(f"scene object {obj!r} lacks key {key!r} (needs color, shape, size, x, y)")
    if obj["color"] not in PALETTE:
        raise ValueError(f"unknown colour {obj['color']!r}: allowed {COLORS}")
    if obj["size"] not in world.sizes:
        raise ValueError(f"unsupported object size {obj['size']!r} in the {world.image_size}px world: "
                         f"allowed {world.sizes}")
    shape_mask(obj["shape"], obj["size"])  # validates the shape
    s, x, y = obj["size"], obj["x"], obj["y"]
    if not (0 <= x <= world.image_size - s and 0 <= y <= world.image_size - s):
        raise ValueError(f"object {obj!r} does not fit in the {world.image_size}px image")


def render(scene: dict) -> np.ndarray:
    """Scene dict → ``uint8 [S, S, 3]`` RGB image (white background, exact palette colours)."""
    world = world_of_size(scene.get("size", SMALL.image_size))
    size = world.image_size
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    for obj in scene["objects"]:
        _check_object(obj, world)
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


def sample_scene(spec: dict, rng: np.random.Generator, world: World = SMALL, max_tries: int = 1000) -> dict:
    """Place the objects of a prompt spec at random (snapped corners, gaps, relation respected)."""
    objects = spec["objects"]
    relation = spec.get("relation")
    for _ in range(max_tries):
        placed: list[dict] = []
        for o in objects:
            s = int(rng.choice(world.sizes))
            corners = np.arange(0, world.image_size - s + 1, world.snap)
            cand = {"color": o["color"], "shape": o["shape"], "size": s,
                    "x": int(rng.choice(corners)), "y": int(rng.choice(corners))}
            if any(box_gap(cand, p) < world.min_gap for p in placed):
                break
            placed.append(cand)
        else:
            if relation is None or relation_holds(relation["type"], placed[relation["subject"]],
                                                  placed[relation["reference"]], world.relation_min_separation):
                return {"size": world.image_size, "objects": placed}
    raise RuntimeError(f"could not place {spec!r} in {max_tries} tries")


def render_spec(spec: dict, seed: int, world: World = SMALL) -> tuple[dict, np.ndarray]:
    """Deterministic convenience: (scene, image) for a prompt spec and an integer seed."""
    scene = sample_scene(spec, np.random.default_rng(seed), world)
    return scene, render(scene)
