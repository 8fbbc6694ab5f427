"""Lossless 4×4 patch codebook: 32×32 image ↔ 8×8 = 64 codes in raster order.

The renderer snaps object corners to the 4 px patch grid and keeps objects ≥ 2 px apart, so every patch is
either white or one object's mask cut at a patch boundary, in one palette colour. The codebook is exactly
that set, enumerated from ``render.shape_mask`` (no training, no data): code 0 is the white patch, the rest
are sorted by colour and pixel bytes, so the codebook is the same on every machine. Patches that are not in
the codebook (images from elsewhere) map to the nearest code in squared RGB distance.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .render import BACKGROUND, COLORS, IMAGE_SIZE, PALETTE, SHAPES, SIZES, SNAP, shape_mask

PATCH = SNAP
GRID = IMAGE_SIZE // PATCH  # 8


def patches_of(img: np.ndarray) -> np.ndarray:
    """``uint8 [..., 32, 32, 3]`` → ``[..., 64, 4, 4, 3]`` patches in raster order."""
    lead = img.shape[:-3]
    p = img.reshape(*lead, GRID, PATCH, GRID, PATCH, 3)
    p = np.moveaxis(p, -4, -3)  # [..., gy, gx, py, px, 3]
    return p.reshape(*lead, GRID * GRID, PATCH, PATCH, 3)


@lru_cache(maxsize=1)
def codebook() -> np.ndarray:
    """``uint8 [V, 4, 4, 3]``; index 0 = white."""
    masks = set()
    span = (max(SIZES) + PATCH - 1) // PATCH * PATCH  # a box starts on a patch corner: at most 3×3 patches
    for shape in SHAPES:
        for size in SIZES:
            canvas = np.zeros((span, span), bool)
            canvas[:size, :size] = shape_mask(shape, size)
            for gy in range(0, span, PATCH):
                for gx in range(0, span, PATCH):
                    m = canvas[gy:gy + PATCH, gx:gx + PATCH]
                    if m.any():
                        masks.add(m.tobytes())
    masks = sorted(masks)
    white = np.empty((PATCH, PATCH, 3), np.uint8)
    white[:] = BACKGROUND
    book = [white]
    for color in COLORS:
        for mb in masks:
            m = np.frombuffer(mb, bool).reshape(PATCH, PATCH)
            p = white.copy()
            p[m] = PALETTE[color]
            book.append(p)
    out = np.stack(book)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def _index() -> dict[bytes, int]:
    return {p.tobytes(): i for i, p in enumerate(codebook())}


def vocab_size() -> int:
    return len(codebook())


def encode(images: np.ndarray) -> np.ndarray:
    """``uint8 [N, 32, 32, 3]`` (or one ``[32, 32, 3]``) → ``int64 [N, 64]`` (or ``[64]``) codes."""
    images = np.asarray(images)
    if images.shape[-3:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"encode expects uint8 images [..., {IMAGE_SIZE}, {IMAGE_SIZE}, 3], "
                         f"got {images.dtype} {images.shape}")
    p = patches_of(images)
    flat = p.reshape(-1, PATCH * PATCH * 3)
    index = _index()
    codes = np.empty(len(flat), np.int64)
    misses = []
    for i, row in enumerate(flat):
        k = index.get(row.tobytes())
        if k is None:
            misses.append(i)
        else:
            codes[i] = k
    if misses:  # nearest code for patches the renderer cannot produce
        book = codebook().reshape(len(codebook()), -1).astype(np.float32)
        d = ((flat[misses].astype(np.float32)[:, None, :] - book[None]) ** 2).sum(-1)
        codes[misses] = d.argmin(1)
    return codes.reshape(*images.shape[:-3], GRID * GRID)


def decode(codes) -> np.ndarray:
    """``[N, 64]`` int codes (numpy or torch) → ``uint8 [N, 32, 32, 3]``."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.shape[-1] != GRID * GRID:
        raise ValueError(f"decode expects [..., {GRID * GRID}] codes, got shape {codes.shape}")
    v = vocab_size()
    if codes.size and (codes.min() < 0 or codes.max() >= v):
        raise ValueError(f"codes must lie in [0, {v}) for the toy-shapes codebook; got "
                         f"[{codes.min()}, {codes.max()}] (-1 marks ungenerated tokens: fill them first)")
    p = codebook()[codes]  # [..., 64, 4, 4, 3]
    lead = codes.shape[:-1]
    p = p.reshape(*lead, GRID, GRID, PATCH, PATCH, 3)
    p = np.moveaxis(p, -3, -4)  # [..., gy, py, gx, px, 3]
    return np.ascontiguousarray(p.reshape(*lead, IMAGE_SIZE, IMAGE_SIZE, 3))


def decode_torch(codes: torch.Tensor) -> torch.Tensor:
    """``[N, 64]`` long → float ``[N, 3, 32, 32]`` in [0, 1] (the model protocol's image layout)."""
    img = torch.from_numpy(decode(codes)).permute(0, 3, 1, 2).float() / 255.0
    return img.to(codes.device if isinstance(codes, torch.Tensor) else "cpu")
