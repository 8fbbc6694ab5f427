"""A tiny Cosmos discrete video tokenizer decoder in NVIDIA's module layout, and its ``decoder.jit``.

:class:`UpstreamDecoder` follows the published definitions (``networks/discrete_video.py``'s
``decoder_jit``: ``inv_quant`` -> ``post_quant_conv`` -> ``DecoderFactorized`` of ``modules/layers3d.py``
with ``UnPatcher3D`` of ``modules/patching.py``), written here from their description in
``docs/models_cosmos_simplear.md``, for any number of frames. It is the test reference of
:mod:`scalingar_core.models.cosmos.decoder` and independent of it: different code (upstream's causal
replicate padding, per-frame GroupNorm, 3-D Haar), upstream's attribute names, its unused weights.

:func:`write_decoder_jit` saves its tensors as a TorchScript archive with ``torch.jit.save`` (attribute tree
only: the archive's code is a no-op; a reader must never run it anyway).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.cosmos.decoder import CosmosConfig

TINY = CosmosConfig(levels=(4, 3, 2), z_channels=4, channels=8, channels_mult=(1, 2, 2), num_res_blocks=1,
                    attn_resolutions=(8,), resolution=64)
"""3 levels and 16x compression as DV8x16x16, 24 codes, attention in the middle up level too."""


class CausalConv(nn.Module):
    """Upstream ``CausalConv3d``: the first frame repeated ``kt - 1`` times in front, zero pad in space."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), padding: int = 0):
        super().__init__()
        self.time_pad, self.pad = kernel[0] - 1, padding
        self.conv3d = nn.Conv3d(cin, cout, kernel)

    def forward(self, x):
        x = torch.cat([x[:, :, :1].repeat(1, 1, self.time_pad, 1, 1), x], 2)
        return self.conv3d(F.pad(x, (self.pad,) * 4 + (0, 0)))


def _pair(cin: int, cout: int) -> nn.Sequential:  # a spatial (1,3,3) then temporal (3,1,1) conv
    return nn.Sequential(CausalConv(cin, cout, (1, 3, 3), 1), CausalConv(cout, cout, (3, 1, 1), 0))


class Normalize(nn.Module):
    """GroupNorm with one group over each frame separately."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, ch, eps=1e-6)

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = self.norm(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


class Resnet(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = Normalize(cin), _pair(cin, cout)
        self.norm2, self.conv2 = Normalize(cout), _pair(cout, cout)
        self.nin_shortcut = CausalConv(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    """Spatial (each frame over its h*w) or causal temporal (each position over frames) self-attention."""

    def __init__(self, ch: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.norm = Normalize(ch)
        self.q, self.k, self.v, self.proj_out = (CausalConv(ch, ch) for _ in range(4))

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = self.norm(x)
        order = (0, 3, 4, 2, 1) if self.temporal else (0, 2, 3, 4, 1)  # tokens last-but-one, channels last
        q, k, v = (m(y).permute(*order).reshape(-1, t if self.temporal else h * w, c)
                   for m in (self.q, self.k, self.v))
        scores = q @ k.transpose(1, 2) * c ** -0.5
        if self.temporal:
            scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        out = scores.softmax(-1) @ v
        if self.temporal:
            out = out.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        else:
            out = out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class HybridUpsample(nn.Module):
    """Upstream ``CausalHybridUpsample3d``: all three convs exist whatever it upsamples."""

    def __init__(self, ch: int, spatial: bool, temporal: bool):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.conv1 = CausalConv(ch, ch, (3, 1, 1), 0)
        self.conv2 = CausalConv(ch, ch, (1, 3, 3), 1)
        self.conv3 = CausalConv(ch, ch)

    def forward(self, x):
        if self.temporal:
            f = 2 if x.shape[2] > 1 else 1
            x = x.repeat_interleave(f, 2)[:, :, f - 1:]
            x = self.conv1(x) + x
        if self.spatial:
            x = x.repeat_interleave(2, 3).repeat_interleave(2, 4)
            x = self.conv2(x) + x
        return self.conv3(x)


class InverseHaar(nn.Module):
    """Upstream ``UnPatcher3D`` (haar): ``log2(p)`` inverse 3-D Haar steps, then the first ``p - 1`` frames
    dropped. Per step each of the 8 channel groups is one (time, height, width) sub-band."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.register_buffer("wavelets", torch.tensor([0.7071067811865476] * 2), persistent=False)
        self.register_buffer("_arange", torch.arange(2), persistent=False)

    @staticmethod
    def _up(lo, hi, dim):  # [.., n, ..] pair -> [.., 2n, ..]: even = a(lo + hi), odd = a(lo - hi)
        a = 0.7071067811865476
        return torch.stack([a * (lo + hi), a * (lo - hi)], dim + 1).flatten(dim, dim + 1)

    def forward(self, x):
        for _ in range(int(math.log2(self.patch_size))):
            g = x.shape[1] // 8
            bands = x.split(g, 1)  # index = 4*t + 2*h + w, 0 = low, 1 = high
            w = [self._up(bands[i], bands[i + 1], 4) for i in range(0, 8, 2)]
            h = [self._up(w[i], w[i + 1], 3) for i in range(0, 4, 2)]
            x = self._up(h[0], h[1], 2) * 8 ** 0.5
        return x[:, :, self.patch_size - 1:]


class Level(nn.Module):
    def __init__(self):
        super().__init__()
        self.block, self.attn = nn.ModuleList(), nn.ModuleList()


class Decoder(nn.Module):
    def __init__(self, cfg: CosmosConfig):
        super().__init__()
        n = len(cfg.channels_mult)
        block_in = cfg.channels * cfg.channels_mult[-1]
        res = cfg.resolution // cfg.patch_size // 2 ** (n - 1)
        self.conv_in = _pair(cfg.z_channels, block_in)
        self.mid = nn.Module()
        self.mid.block_1 = Resnet(block_in, block_in)
        self.mid.attn_1 = nn.Sequential(Attention(block_in, False), Attention(block_in, True))
        self.mid.block_2 = Resnet(block_in, block_in)
        levels = {}
        for level in reversed(range(n)):
            up = Level()
            out = cfg.channels * cfg.channels_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                up.block.append(Resnet(block_in, out))
                block_in = out
                if res in cfg.attn_resolutions:
                    up.attn.append(nn.Sequential(Attention(out, False), Attention(out, True)))
            if level != 0:
                up.upsample = HybridUpsample(out, *cfg.upsampling(level))
                res *= 2
            levels[level] = up
        self.up = nn.ModuleList(levels[i] for i in range(n))
        self.norm_out = Normalize(block_in)
        self.conv_out = _pair(block_in, 3 * cfg.patch_size ** 3)
        self.unpatcher3d = InverseHaar(cfg.patch_size)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for j, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[j](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.unpatcher3d(self.conv_out(F.silu(self.norm_out(h))))


class InverseFSQ(nn.Module):
    def __init__(self, levels):
        super().__init__()
        q = nn.Module()
        q.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        q.register_buffer("_basis", torch.cumprod(torch.tensor([1] + list(levels[:-1])), 0).int(), persistent=False)
        q.register_buffer("implicit_codebook", self.codes(torch.arange(math.prod(levels)), q), persistent=False)
        self.quantizer = q

    @staticmethod
    def codes(indices, q):
        half = q._levels // 2
        return ((indices[..., None] // q._basis) % q._levels - half) / half

    def forward(self, indices):  # [B, T, h, w] -> [B, d, T, h, w]
        return self.codes(indices, self.quantizer).permute(0, 4, 1, 2, 3)


def upstream_decoder(cfg: CosmosConfig = TINY, seed: int = 0) -> nn.Sequential:
    """NVIDIA's ``decoder_jit()`` Sequential for ``cfg`` with random weights (norms too, so every tensor
    matters)."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(inv_quant=InverseFSQ(cfg.levels),
                                      post_quant_conv=CausalConv(len(cfg.levels), cfg.z_channels),
                                      decoder=Decoder(cfg)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
    return model.eval()


class _Root(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _tree(module: nn.Module, root: bool = False) -> nn.Module:
    """The same attribute tree with plain containers (nothing to compile but a no-op root)."""
    out = _Root() if root else (nn.ModuleList() if isinstance(module, (nn.ModuleList, nn.Sequential)) else nn.Module())
    for name, p in module.named_parameters(recurse=False):
        out.register_parameter(name, nn.Parameter(p.detach().clone(), requires_grad=False))
    for name, b in module.named_buffers(recurse=False):
        out.register_buffer(name, b.clone(), persistent=name not in module._non_persistent_buffers_set)
    for name, child in module.named_children():
        if isinstance(out, nn.ModuleList):
            out.append(_tree(child))
        else:
            out.add_module(name, _tree(child))
    return out


def write_decoder_jit(path: str | Path, model: nn.Module) -> Path:
    """Save ``model``'s tensors under its attribute names as a TorchScript archive (``torch.jit.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(_tree(model, root=True)), str(path))
    return path
