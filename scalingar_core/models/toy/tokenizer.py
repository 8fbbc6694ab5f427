"""Lossless 4×4 patch codebooks: a world's S×S image ↔ (S/4)² codes in raster order.

The renderer snaps object corners to the 4 px patch grid and keeps objects apart, so every patch is either
white or one object's mask cut at a patch boundary, in one palette colour. A world's codebook is exactly
that set, enumerated from ``render.shape_mask`` for the world's object sizes (no training, no data): code 0
is the white patch, the rest are sorted by colour and pixel bytes, so the codebook is the same on every
machine. Patches that are not in the codebook (images from elsewhere) map to the nearest code in squared
RGB distance.

Every function takes the :class:`~.render.World` it works in; ``encode``/``decode`` infer it from the image
side or the code count when it is not given (32 px ↔ 64 codes, 64 px ↔ 256 codes).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .render import (
    BACKGROUND,
    COLORS,
    PALETTE,
    SHAPES,
    SMALL,
    World,
    shape_mask,
    world_of_size,
    world_with,
)

PATCH = SMALL.snap
GRID = SMALL.grid  # the small world's 8 (historical name)


def world_of_tokens(count: int) -> World:
    """The world whose images have ``count`` codes."""
    return world_with("tokens", count)


def patches_of(img: np.ndarray, world: World) -> np.ndarray:
    """``uint8 [..., S, S, 3]`` → ``[..., G², P, P, 3]`` patches in raster order."""
    lead, g, p = img.shape[:-3], world.grid, world.snap
    x = img.reshape(*lead, g, p, g, p, 3)
    x = np.moveaxis(x, -4, -3)  # [..., gy, gx, py, px, 3]
    return x.reshape(*lead, g * g, p, p, 3)


@lru_cache(maxsize=None)
def codebook(world: World = SMALL) -> np.ndarray:
    """``uint8 [V, P, P, 3]``; index 0 = white."""
    p = world.snap
    masks = set()
    for shape in SHAPES:
        for size in world.sizes:
            span = -(-size // p) * p  # a box starts on a patch corner
            canvas = np.zeros((span, span), bool)
            canvas[:size, :size] = shape_mask(shape, size)
            for gy in range(0, span, p):
                for gx in range(0, span, p):
                    m = canvas[gy:gy + p, gx:gx + p]
                    if m.any():
                        masks.add(m.tobytes())
    white = np.empty((p, p, 3), np.uint8)
    white[:] = BACKGROUND
    book = [white]
    for color in COLORS:
        for mb in sorted(masks):
            m = np.frombuffer(mb, bool).reshape(p, p)
            patch = white.copy()
            patch[m] = PALETTE[color]
            book.append(patch)
    out = np.stack(book)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=None)
def _index(world: World) -> dict[bytes, int]:
    return {p.tobytes(): i for i, p in enumerate(codebook(world))}


def vocab_size(world: World = SMALL) -> int:
    return len(codebook(world))


def encode(images: np.ndarray, world: World | None = None) -> np.ndarray:
    """``uint8 [N, S, S, 3]`` (or one ``[S, S, 3]``) → ``int64 [N, G²]`` (or ``[G²]``) codes."""
    images = np.asarray(images)
    if images.ndim < 3 or images.shape[-1] != 3 or images.shape[-2] != images.shape[-3] or images.dtype != np.uint8:
        raise ValueError(f"encode expects square uint8 RGB images [..., S, S, 3], got {images.dtype} {images.shape}")
    world = world or world_of_size(images.shape[-2])
    if images.shape[-2] != world.image_size:
        raise ValueError(f"{world.name} encodes {world.image_size}px images, got shape {images.shape}")
    p = patches_of(images, world)
    flat = p.reshape(-1, world.snap * world.snap * 3)
    index = _index(world)
    codes = np.empty(len(flat), np.int64)
    misses = []
    for i, row in enumerate(flat):
        k = index.get(row.tobytes())
        if k is None:
            misses.append(i)
        else:
            codes[i] = k
    if misses:  # nearest code for patches the renderer cannot produce
        book = codebook(world).reshape(vocab_size(world), -1).astype(np.float32)
        d = ((flat[misses].astype(np.float32)[:, None, :] - book[None]) ** 2).sum(-1)
        codes[misses] = d.argmin(1)
    return codes.reshape(*images.shape[:-3], world.tokens)


def decode(codes, world: World | None = None) -> np.ndarray:
    """``[N, G²]`` int codes (numpy or torch) → ``uint8 [N, S, S, 3]``."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    world = world or world_of_tokens(codes.shape[-1])
    if codes.shape[-1] != world.tokens:
        raise ValueError(f"{world.name} decodes [..., {world.tokens}] codes, got shape {codes.shape}")
    v = vocab_size(world)
    if codes.size and (codes.min() < 0 or codes.max() >= v):
        raise ValueError(f"codes must lie in [0, {v}) for the {world.name} codebook; got "
                         f"[{codes.min()}, {codes.max()}] (-1 marks ungenerated tokens: fill them first)")
    g, p = world.grid, world.snap
    x = codebook(world)[codes]  # [..., G², P, P, 3]
    lead = codes.shape[:-1]
    x = x.reshape(*lead, g, g, p, p, 3)
    x = np.moveaxis(x, -3, -4)  # [..., gy, py, gx, px, 3]
    return np.ascontiguousarray(x.reshape(*lead, world.image_size, world.image_size, 3))


def decode_torch(codes: torch.Tensor, world: World | None = None) -> torch.Tensor:
    """``[N, G²]`` long → float ``[N, 3, S, S]`` in [0, 1] (the model protocol's image layout)."""
    img = torch.from_numpy(decode(codes, world)).permute(0, 3, 1, 2).float() / 255.0
    return img.to(codes.device if isinstance(codes, torch.Tensor) else "cpu")
