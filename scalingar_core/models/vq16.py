"""LlamaGen's VQ-16 image tokenizer (VQGAN-style conv encoder/decoder, L2-normalised 8-dim codebook).

Attribute names follow the upstream state dict (``docs/models.md``). Decoding needs only
``quantize.embedding``, ``post_quant_conv`` and ``decoder``; the encoder is here for round trips.
Kept in fp32: the sample scripts never cast the VQ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .protocol import raster_codes


@dataclass(frozen=True)
class VQConfig:
    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    ch: int = 128  # base channels
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # VQ-16; VQ-8 is (1, 2, 2, 4)
    z_channels: int = 256
    num_res_blocks: int = 2
    codebook_l2_norm: bool = True
    usage_buffer: int = 65536  # length of quantize.codebook_used (0 = none); unused at inference

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions with 1x1 conv projections."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(B, C, H * W).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # scale C^-0.5
        return x + self.proj_out(y.transpose(1, 2).reshape(B, C, H, W))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, as upstream


class Level(nn.Module):
    """One resolution: ``res`` blocks, optional ``attn`` after each, then an optional resampler."""

    def __init__(self, cin: int, cout: int, n_res: int, attn: bool, resample: type | None):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout) for i in range(n_res))
        self.attn = nn.ModuleList(AttnBlock(cout) for _ in range(n_res if attn else 0))
        if resample is Upsample:
            self.upsample = Upsample(cout)
        elif resample is Downsample:
            self.downsample = Downsample(cout)

    def forward(self, x):
        for i, res in enumerate(self.res):
            x = res(x)
            if len(self.attn):
                x = self.attn[i](x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        return x


def _mid(ch: int) -> nn.ModuleList:
    return nn.ModuleList([ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)])


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        last = len(chans) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList(
            Level(cfg.ch if i == 0 else chans[i - 1], c, cfg.num_res_blocks, attn=i == last,
                  resample=None if i == last else Downsample) for i, c in enumerate(chans))
        self.mid = _mid(chans[-1])
        self.norm_out = _norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for m in self.mid:
            h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        chans = [cfg.ch * m for m in reversed(cfg.ch_mult)]  # lowest resolution first
        last = len(chans) - 1
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[0], 3, padding=1)
        self.mid = _mid(chans[0])
        self.conv_blocks = nn.ModuleList(
            Level(chans[max(i - 1, 0)], c, cfg.num_res_blocks + 1, attn=i == 0,
                  resample=None if i == last else Upsample) for i, c in enumerate(chans))
        self.norm_out = _norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        for m in self.mid:
            h = m(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.l2 = cfg.codebook_l2_norm
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)
        if cfg.usage_buffer:
            self.register_buffer("codebook_used", torch.zeros(cfg.usage_buffer))

    def codebook(self) -> torch.Tensor:
        w = self.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self.l2 else w  # normalised at lookup, as upstream

    def lookup(self, codes: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Raster-order ``codes [B, h*w]`` -> latents ``[B, dim, h, w]``."""
        return self.codebook()[codes].reshape(codes.shape[0], h, w, -1).permute(0, 3, 1, 2)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, dim, h, w]`` -> codes ``[B, h*w]`` (nearest code; L2-normalised space if l2)."""
        zf = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        if self.l2:
            zf = F.normalize(zf, p=2, dim=-1)
        e = self.codebook()
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)[None] - 2 * zf @ e.t()
        return d.argmin(1).reshape(z.shape[0], -1)


class VQModel(nn.Module):
    def __init__(self, cfg: VQConfig = VQConfig()):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = Quantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [0, 1] -> raster-order codes ``[B, (H/16)*(W/16)]``."""
        x = images.to(self.quant_conv.weight) * 2 - 1
        return self.quantize.nearest(self.quant_conv(self.encoder(x)))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int] | None = None,
                     chunk: int | None = None) -> torch.Tensor:
        """Raster-order ``codes [B, h*w]`` -> images ``[B, 3, 16h, 16w]`` in [0, 1] (fp32).

        ``grid`` defaults to a square; ``chunk`` images are decoded at a time to bound activation memory
        (default :func:`decode_chunk`)."""
        codes, (h, w) = raster_codes(codes, self.config.codebook_size, self.post_quant_conv.weight.device, grid)
        chunk = chunk or decode_chunk(max(h, w) * self.config.downsample)
        out = []
        for part in codes.split(max(1, chunk)):
            x = self.decoder(self.post_quant_conv(self.quantize.lookup(part, h, w)))
            out.append(((x.float() + 1) / 2).clamp(0, 1))
        return torch.cat(out)


def decode_chunk(image_size: int) -> int:
    """Images decoded at once: 4 at 256 px, 1 at 512 px (about the same activation memory)."""
    return max(1, 4 * 256 * 256 // (image_size * image_size))


def decoder_activation_bytes(cfg: VQConfig, image_size: int, images: int) -> int:
    """Rough peak activation memory of decoding ``images`` at once in fp32: with no autograd about four
    full-resolution feature maps are alive at a time (block input, norm, conv output, residual)."""
    return 4 * images * cfg.ch * cfg.ch_mult[0] * image_size * image_size * 4
