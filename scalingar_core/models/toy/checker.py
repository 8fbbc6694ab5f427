"""Exact mini-GenEval checker: does a final image satisfy a prompt spec? (``prompts.py`` documents specs.)

Steps, on the image alone:

1. label every pixel with its nearest palette colour (white background included);
2. per colour, 8-connected components; components under the world's ``min_pixels`` are noise and dropped;
3. shape from the component's bounding box: its sides must lie in the world's ``min_side``..``max_side`` px
   and differ by at most ``max_aspect_diff`` px, else it is a "blob"; then by fill ratio (pixels / box
   area): ≥ ``SQUARE_FILL`` square, ≥ ``CIRCLE_FILL`` circle, ≥ ``TRIANGLE_FILL`` triangle, else blob.
   True renders fill 1.0 (square), 0.79–0.85 (circle), 0.55–0.63 (triangle): thresholds sit between;
4. the multiset of detected (colour, shape) must equal the spec's exactly (a blob always fails);
5. a relation holds when the subject's centroid is more than the world's ``relation_margin`` px beyond the
   reference's on the named axis (with identical objects, some assignment must satisfy it).

The world (``render.World``: 32 px or 64 px) is read from the image size; the rules are the same in both.

``check(image, spec)`` → :class:`CheckResult` (``passed``, ``reason``, ``detected``). Images may be
``uint8 [H, W, 3]``, float ``[3, H, W]`` / ``[H, W, 3]`` in [0, 1] (numpy or torch).
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .render import BACKGROUND, COLORS, PALETTE, SMALL, World, world_of_size

SQUARE_FILL, CIRCLE_FILL, TRIANGLE_FILL = 0.93, 0.72, 0.45

_PALETTE_ARR = np.array([BACKGROUND] + [PALETTE[c] for c in COLORS], np.float32)  # index 0 = background


@dataclass
class Detection:
    color: str
    shape: str  # circle | square | triangle | blob
    centroid: tuple[float, float]  # (x, y)
    box: tuple[int, int, int, int]  # x0, y0, width, height
    pixels: int

    def to_dict(self) -> dict:
        return {"color": self.color, "shape": self.shape, "centroid": list(self.centroid),
                "box": list(self.box), "pixels": self.pixels}


FAILURE_KINDS = ("malformed shape", "wrong object", "missing object", "extra object", "wrong relation")


def failure_kind(reason: str | None) -> str | None:
    """The kind of a failure reason (None for a pass or an unscored image): a shape that is none of the
    three, a wanted object drawn as another colour or shape (something missing and something unexpected),
    an object missing, an extra object, or the right objects in the wrong relation."""
    if not reason or reason.startswith("ok"):
        return None
    if reason.startswith("malformed"):
        return "malformed shape"
    missing, extra = reason.startswith("missing"), "unexpected" in reason
    if missing and extra:
        return "wrong object"
    if missing or extra:
        return "missing object" if missing else "extra object"
    return "wrong relation"


def _names(objects: Counter) -> str:
    return ", ".join((f"{n}× " if n > 1 else "") + f"{c} {s}" for (c, s), n in sorted(objects.items()))


@dataclass
class CheckResult:
    passed: bool
    reason: str
    detected: list[Detection] = field(default_factory=list)
    missing: Counter = field(default_factory=Counter)  # wanted (colour, shape) not found
    unexpected: Counter = field(default_factory=Counter)  # found (colour, shape) not wanted

    def __bool__(self) -> bool:
        return self.passed

    @property
    def kind(self) -> str | None:
        return failure_kind(self.reason)

    def verdict(self) -> str:
        """One short line for a person: 'passes', or the failure's kind and what it was, e.g.
        'wrong object: yellow square for blue square'."""
        if self.passed:
            return "passes"
        kind = self.kind
        if kind == "wrong object":
            return f"wrong object: {_names(self.unexpected)} for {_names(self.missing)}"
        if kind == "missing object":
            return f"missing object: {_names(self.missing)}"
        if kind == "extra object":
            return f"extra object: {_names(self.unexpected)}"
        return f"{kind}: {self.reason.removeprefix('malformed ')}"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "verdict": self.verdict(),
                "detected": [d.to_dict() for d in self.detected]}


def to_uint8_hwc(image) -> np.ndarray:
    """Accept uint8 HWC or float CHW/HWC in [0, 1] (numpy or torch); return uint8 ``[H, W, 3]``."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim != 3:
        raise ValueError(f"image must have 3 dimensions (H, W, 3 or 3, H, W), got shape {a.shape}")
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.shape[-1] != 3:
        raise ValueError(f"image must be RGB with 3 channels, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return a


def palette_labels(img: np.ndarray) -> np.ndarray:
    """``[H, W]`` int: 0 background, 1 + index into ``COLORS`` otherwise (nearest palette colour)."""
    d = ((img[:, :, None, :].astype(np.float32) - _PALETTE_ARR) ** 2).sum(-1)
    return d.argmin(-1)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a boolean mask, as arrays of (row, col) pixel coordinates."""
    h, w = mask.shape
    seen = np.zeros_like(mask, bool)
    out = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        stack, pix = [(r0, c0)], []
        while stack:  # images are at most 64×64: a plain flood fill is fast enough and dependency-free
            r, c = stack.pop()
            pix.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        out.append(np.array(pix))
    return out


def classify(pix: np.ndarray, world: World = SMALL) -> tuple[str, tuple[int, int, int, int]]:
    """Shape name (or "blob") and bounding box (x0, y0, w, h) of one component."""
    r0, c0 = pix.min(0)
    r1, c1 = pix.max(0)
    h, w = int(r1 - r0 + 1), int(c1 - c0 + 1)
    box = (int(c0), int(r0), w, h)
    lo, hi = world.min_side, world.max_side
    if not (lo <= h <= hi and lo <= w <= hi) or abs(h - w) > world.max_aspect_diff:
        return "blob", box
    fill = len(pix) / (h * w)
    if fill >= SQUARE_FILL:
        return "square", box
    if fill >= CIRCLE_FILL:
        return "circle", box
    if fill >= TRIANGLE_FILL:
        return "triangle", box
    return "blob", box


def detect(image) -> list[Detection]:
    """Every object in the image (including blobs), ordered by colour then position."""
    img = to_uint8_hwc(image)
    world = world_of_size(img.shape[0])
    labels = palette_labels(img)
    found = []
    for k, color in enumerate(COLORS, start=1):
        for pix in components(labels == k):
            if len(pix) < world.min_pixels:
                continue
            shape, box = classify(pix, world)
            cy, cx = pix.mean(0) + 0.5  # pixel centres, same convention as render.centre
            found.append(Detection(color, shape, (float(cx), float(cy)), box, len(pix)))
    return found


def _fmt(counter: Counter) -> str:
    return ", ".join(f"{n}× {c} {s}" for (c, s), n in sorted(counter.items())) or "nothing"


def _relation_ok(kind: str, s: Detection, r: Detection, margin: float) -> bool:
    (sx, sy), (rx, ry) = s.centroid, r.centroid
    delta = {"left_of": rx - sx, "right_of": sx - rx, "above": ry - sy, "below": sy - ry}[kind]
    return delta > margin


def check(image, spec: dict) -> CheckResult:
    """Pass/fail of one image against one spec, with a human-readable reason."""
    img = to_uint8_hwc(image)
    margin = world_of_size(img.shape[0]).relation_margin
    found = detect(img)
    blobs = [d for d in found if d.shape == "blob"]
    if blobs:
        b = blobs[0]
        return CheckResult(False, f"malformed {b.color} shape at {b.box[:2]} (box {b.box[2]}×{b.box[3]}, "
                                  f"{b.pixels} px): not a circle, square or triangle", found)
    want = Counter((o["color"], o["shape"]) for o in spec["objects"])
    got = Counter((d.color, d.shape) for d in found)
    if want != got:
        missing, extra = want - got, got - want
        parts = []
        if missing:
            parts.append(f"missing {_fmt(missing)}")
        if extra:
            parts.append(f"unexpected {_fmt(extra)}")
        return CheckResult(False, "; ".join(parts) + f" (found {_fmt(got)})", found, missing, extra)
    rel = spec.get("relation")
    if rel is not None:
        s_key = (spec["objects"][rel["subject"]]["color"], spec["objects"][rel["subject"]]["shape"])
        r_key = (spec["objects"][rel["reference"]]["color"], spec["objects"][rel["reference"]]["shape"])
        subj = [d for d in found if (d.color, d.shape) == s_key]
        refs = [d for d in found if (d.color, d.shape) == r_key]
        if not any(_relation_ok(rel["type"], s, r, margin) for s, r in itertools.product(subj, refs) if s is not r):
            s, r = subj[0], refs[0] if refs[0] is not subj[0] else refs[-1]
            return CheckResult(False, f"{s_key[0]} {s_key[1]} at ({s.centroid[0]:.1f}, {s.centroid[1]:.1f}) is "
                                      f"not {rel['type'].replace('_', ' ')} {r_key[0]} {r_key[1]} at "
                                      f"({r.centroid[0]:.1f}, {r.centroid[1]:.1f})", found)
    return CheckResult(True, "ok: " + _fmt(got), found)
