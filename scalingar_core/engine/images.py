"""Turning (possibly partial) code grids into images, and marking removed candidates."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GREY = 0.5
REMOVED_RGB = (0.9, 0.1, 0.1)


def decode_partial(model, codes: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Decode ``[n, T]`` codes where −1 marks an ungenerated position; those cells come out grey."""
    h, w = model.grid
    known = codes >= 0
    outs = []
    for start in range(0, codes.shape[0], batch):
        chunk = codes[start:start + batch]
        outs.append(model.decode(chunk.clamp_min(0)).float().clamp(0, 1))
    images = torch.cat(outs)
    if not bool(known.all()):
        cell_mask = known.reshape(-1, 1, h, w).float()
        pixel_mask = F.interpolate(cell_mask, size=images.shape[-2:], mode="nearest").to(images)
        images = images * pixel_mask + GREY * (1 - pixel_mask)
    return images


def mark_removed(image: torch.Tensor, width: int | None = None, diagonal: bool = True) -> torch.Tensor:
    """A red frame (and diagonal) on ``[3, H, W]``: this candidate was pruned before the end."""
    image = image.clone()
    _, hh, ww = image.shape
    width = width or max(1, min(hh, ww) // 32)
    colour = torch.tensor(REMOVED_RGB, dtype=image.dtype, device=image.device)[:, None, None]
    image[:, :width, :] = colour
    image[:, -width:, :] = colour
    image[:, :, :width] = colour
    image[:, :, -width:] = colour
    if not diagonal:
        return image
    idx = torch.arange(min(hh, ww), device=image.device)
    for d in range(width):
        image[:, idx, (idx + d).clamp_max(ww - 1)] = colour[:, :, 0]
    return image


def grid_image(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``[n, 3, H, W]`` into one ``[3, H', W']`` image (grey gutters, so white images stay apart)."""
    n, c, h, w = images.shape
    columns = columns or min(n, 4)
    rows = -(-n // columns)
    out = torch.full((c, rows * (h + pad) + pad, columns * (w + pad) + pad), 0.6, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, columns)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i].cpu()
    return out


def to_pil(image: torch.Tensor):
    """``[3, H, W]`` float in [0, 1] → PIL image."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)
