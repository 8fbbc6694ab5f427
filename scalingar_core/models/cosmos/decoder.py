"""The Cosmos-1.0-Tokenizer-DV8x16x16 decoder on one frame: codes -> images.

Three parts, in the order NVIDIA's ``decoder.jit`` runs them (an ``nn.Sequential`` of ``inv_quant``,
``post_quant_conv`` and ``decoder``):

1. inverse FSQ (:func:`fsq_codes`): a code is a mixed-radix number over the levels; no learned weights;
2. ``post_quant_conv``: a 1x1x1 causal conv, 6 -> 16 channels;
3. the factorized causal decoder with its inverse 3-D Haar unpatching. diffusers' ``CosmosDecoder3d`` (the
   decoder of the continuous sibling, ``AutoencoderKLCosmos``) builds exactly this network when given the
   DV8x16x16 settings, so it is used as it is; only the upstream weight names are mapped onto it
   (:func:`weight_names`), strictly.

Facts and the name map are written out in ``docs/models_cosmos_simplear.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoints import SHOW, CheckpointError
from ..protocol import raster_codes

DIFFUSERS_MIN = "0.34"  # the first release with AutoencoderKLCosmos (tested: 0.42.1)
_HAAR = 0.7071067811865476


@dataclass(frozen=True)
class CosmosConfig:
    """Settings of NVIDIA's ``discrete_video`` config with 16x spatial and 8x temporal compression."""

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    z_channels: int = 16
    channels: int = 128
    channels_mult: tuple[int, ...] = (2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (32,)
    resolution: int = 1024  # only decides which levels carry attention, not the image size
    patch_size: int = 4
    spatial_compression: int = 16
    temporal_compression: int = 8

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def embedding_dim(self) -> int:
        return len(self.levels)

    def block_channels(self) -> tuple[int, ...]:
        """diffusers' ``block_out_channels`` for this decoder (its up blocks run them in reverse)."""
        return tuple(self.channels * m for m in self.channels_mult) + (self.channels * self.channels_mult[-1],)

    def upsampling(self, level: int) -> tuple[bool, bool]:
        """(spatial, temporal) upsampling after upstream level ``level`` (>= 1), as NVIDIA's decoder decides."""
        n, patch = len(self.channels_mult), int(math.log2(self.patch_size))  # Haar unpatching does the rest
        spatial_ups = int(math.log2(self.spatial_compression)) - patch
        temporal_ups = int(math.log2(self.temporal_compression)) - patch
        rev = n - level - 1  # upstream counts levels from the output side
        temporal = 0 < rev < temporal_ups + 1
        return temporal or (rev < spatial_ups and spatial_ups > temporal_ups), temporal


DV8x16x16 = CosmosConfig()


def fsq_codes(indices: torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    """Inverse finite scalar quantization: ``indices [...]`` -> codes ``[..., len(levels)]`` in [-1, 1].

    Digit ``j`` of an index in the mixed radix ``levels`` (least significant first) is ``d_j``; its code is
    ``(d_j - L_j // 2) / (L_j // 2)``. Exact in bf16 for these levels."""
    lv = torch.tensor(levels, device=indices.device)
    basis = torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0)
    digits = (indices[..., None] // basis) % lv
    half = lv // 2
    return (digits - half).float() / half


def weight_names(cfg: CosmosConfig = DV8x16x16) -> dict[str, str | None]:
    """Upstream ``decoder.jit`` tensor name -> our module's name (``None``: a weight upstream builds but never
    uses: the temporal conv of an upsampler that only upsamples in space)."""
    names: dict[str, str | None] = {}

    def conv(up: str, ours: str | None) -> None:  # upstream wraps every conv as CausalConv3d.conv3d
        names[f"{up}.conv3d"] = ours

    def proj(up: str, ours: str) -> None:  # a (1,3,3) spatial then (3,1,1) temporal conv pair
        conv(f"{up}.0", f"{ours}.conv_s")
        conv(f"{up}.1", f"{ours}.conv_t")

    def norm(up: str, ours: str) -> None:
        names[f"{up}.norm"] = f"{ours}.norm"

    def resnet(up: str, ours: str, cin: int, cout: int) -> None:
        norm(f"{up}.norm1", f"{ours}.norm1")
        proj(f"{up}.conv1", f"{ours}.conv1")
        norm(f"{up}.norm2", f"{ours}.norm2")
        proj(f"{up}.conv2", f"{ours}.conv2")
        if cin != cout:
            conv(f"{up}.nin_shortcut", f"{ours}.conv_shortcut")

    def attention(up: str, ours_spatial: str, ours_temporal: str) -> None:
        for part, ours in ((0, ours_spatial), (1, ours_temporal)):
            norm(f"{up}.{part}.norm", f"{ours}.norm")
            for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
                conv(f"{up}.{part}.{a}", f"{ours}.{b}")

    conv("post_quant_conv", "post_quant_conv")
    proj("decoder.conv_in", "decoder.conv_in")
    top = cfg.channels * cfg.channels_mult[-1]
    resnet("decoder.mid.block_1", "decoder.mid_block.resnets.0", top, top)
    attention("decoder.mid.attn_1", "decoder.mid_block.attentions.0", "decoder.mid_block.temp_attentions.0")
    resnet("decoder.mid.block_2", "decoder.mid_block.resnets.1", top, top)
    n = len(cfg.channels_mult)
    block_in, res = top, cfg.resolution // cfg.patch_size // 2 ** (n - 1)
    for i, level in enumerate(reversed(range(n))):  # upstream numbers levels from the output side
        up, ours = f"decoder.up.{level}", f"decoder.up_blocks.{i}"
        out = cfg.channels * cfg.channels_mult[level]
        for j in range(cfg.num_res_blocks + 1):
            resnet(f"{up}.block.{j}", f"{ours}.resnets.{j}", block_in, out)
            block_in = out
            if res in cfg.attn_resolutions:
                attention(f"{up}.attn.{j}", f"{ours}.attentions.{j}", f"{ours}.temp_attentions.{j}")
        if level != 0:
            spatial, temporal = cfg.upsampling(level)
            for c, used in (("conv1", temporal), ("conv2", spatial), ("conv3", spatial or temporal)):
                conv(f"{up}.upsample.{c}", f"{ours}.upsamplers.0.{c}" if used else None)
            res *= 2
    norm("decoder.norm_out", "decoder.norm_out")
    proj("decoder.conv_out", "decoder.conv_out")
    return {f"{k}.{p}": (f"{v}.{p}" if v else None) for k, v in names.items() for p in ("weight", "bias")}


# Non-learned buffers the archive also carries (TorchScript pickles non-persistent buffers): checked where they
# say which tokenizer this is, otherwise recomputed here.
_BUFFERS = ("inv_quant.quantizer._levels", "inv_quant.quantizer._basis", "inv_quant.quantizer.implicit_codebook",
            "decoder.unpatcher3d.wavelets", "decoder.unpatcher3d._arange")


def _check_buffers(sd: dict[str, torch.Tensor], cfg: CosmosConfig, source: str) -> None:
    levels = sd.get("inv_quant.quantizer._levels")
    if levels is not None and tuple(int(x) for x in levels.reshape(-1)) != tuple(cfg.levels):
        raise CheckpointError(f"{source} quantizes with FSQ levels {levels.tolist()}, not DV8x16x16's "
                              f"{list(cfg.levels)}: it belongs to another tokenizer. Use Cosmos-1.0-Tokenizer-"
                              f"DV8x16x16's decoder.jit")
    wavelets = sd.get("decoder.unpatcher3d.wavelets")
    if wavelets is not None and not torch.allclose(wavelets.float(), torch.full_like(wavelets.float(), _HAAR)):
        raise CheckpointError(f"{source} unpatches with wavelet {wavelets.tolist()}, not Haar: it belongs to "
                              f"another tokenizer. Use Cosmos-1.0-Tokenizer-DV8x16x16's decoder.jit")


def map_weights(sd: dict[str, torch.Tensor], module: nn.Module, cfg: CosmosConfig, source: str
                ) -> dict[str, torch.Tensor]:
    """Upstream-named tensors -> ``module``'s state dict, or one error listing every missing, unexpected and
    wrongly shaped tensor under its upstream name."""
    _check_buffers(sd, cfg, source)
    names = weight_names(cfg)
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in names if k not in sd]
    unexpected = [k for k in sd if k not in names and k not in _BUFFERS]
    shapes = [f"{k} {tuple(sd[k].shape)} (expected {want[ours]})" for k, ours in names.items()
              if ours and k in sd and tuple(sd[k].shape) != want[ours]]
    if missing or unexpected or shapes:
        lines = [f"{source} is not a Cosmos DV8x16x16 decoder:"]
        for what, items in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", shapes)):
            if items:
                more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
                lines.append(f"  {len(items)} {what}: {', '.join(items[:SHOW])}{more}")
        lines.append("  Use the decoder.jit of nvidia/Cosmos-1.0-Tokenizer-DV8x16x16 (or its converted copy).")
        raise CheckpointError("\n".join(lines))
    out = {ours: sd[k] for k, ours in names.items() if ours}
    if set(out) != set(want):  # the name map and the module disagree: a bug here, not a bad file
        raise RuntimeError(f"name map misses {sorted(set(want) - set(out))[:SHOW]}")
    return out


def _diffusers():
    try:
        from diffusers.models.autoencoders import autoencoder_kl_cosmos as cosmos
    except ImportError as exc:
        raise ImportError(f"the Cosmos decoder (SimpleAR) needs diffusers>={DIFFUSERS_MIN}: "
                          f"pip install 'diffusers>={DIFFUSERS_MIN}' ({exc})") from exc
    return cosmos


class CosmosDecoder(nn.Module):
    """Codes ``[B, h, w]`` -> images ``[B, 3, 16h, 16w]`` in [-1, 1], one frame each."""

    def __init__(self, cfg: CosmosConfig = DV8x16x16):
        super().__init__()
        cosmos = _diffusers()
        self.config = cfg
        self.post_quant_conv = cosmos.CosmosCausalConv3d(cfg.embedding_dim, cfg.z_channels, kernel_size=1,
                                                         padding=0)
        self.decoder = cosmos.CosmosDecoder3d(
            in_channels=cfg.z_channels, out_channels=3, block_out_channels=cfg.block_channels(),
            num_resnet_blocks=cfg.num_res_blocks, attention_resolutions=cfg.attn_resolutions,
            resolution=cfg.resolution, patch_size=cfg.patch_size, patch_type="haar",
            spatial_compression_ratio=cfg.spatial_compression, temporal_compression_ratio=cfg.temporal_compression)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        dtype = self.post_quant_conv.weight.dtype
        z = fsq_codes(codes, self.config.levels).to(dtype).permute(0, 3, 1, 2)[:, :, None]  # [B, 6, 1, h, w]
        x = self.decoder(self.post_quant_conv(z))  # [B, 3, 1, H, W]: a causal decoder keeps one frame one frame
        return x[:, :, -1]

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int] | None = None,
                     chunk: int | None = None) -> torch.Tensor:
        """Raster-order ``codes [B, h*w]`` -> images ``[B, 3, 16h, 16w]`` in [0, 1] (fp32), ``chunk`` images at
        a time (default: :func:`decode_chunk`)."""
        codes, (h, w) = raster_codes(codes, self.config.codebook_size, self.post_quant_conv.weight.device, grid)
        itemsize = self.post_quant_conv.weight.element_size()
        chunk = chunk or decode_chunk(self.config, max(h, w) * self.config.spatial_compression, itemsize)
        out = [((self(part.reshape(-1, h, w)).float() + 1) / 2).clamp(0, 1) for part in codes.split(chunk)]
        return torch.cat(out)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Upstream-named tensors of ``decoder.jit`` (read safely) or of its ``.safetensors`` copy."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from ..checkpoints import read_file

        return read_file(path)
    from .jit_reader import read_tensors

    return read_tensors(path)


def load_decoder(path: str | Path, cfg: CosmosConfig = DV8x16x16, device=None,
                 dtype: torch.dtype = torch.float32) -> CosmosDecoder:
    """A :class:`CosmosDecoder` with the weights of ``path`` (``decoder.jit`` or its converted copy)."""
    device = torch.device(device or "cpu")
    with torch.device(device):
        module = CosmosDecoder(cfg)
    module.load_state_dict(map_weights(read_weights(path), module, cfg, str(path)), strict=True)
    return module.to(dtype=dtype).eval().requires_grad_(False)


def convert_decoder(src: str | Path, dst: str | Path, cfg: CosmosConfig = DV8x16x16) -> Path:
    """Write the tensors of a ``decoder.jit`` (upstream names, checked against ``cfg``) to ``.safetensors``."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / (src.stem + ".safetensors")
    if dst.suffix != ".safetensors":
        raise ValueError(f"convert target {dst} must end in .safetensors (or be an existing folder)")
    sd = read_weights(src)
    with torch.device("meta"):
        map_weights(sd, CosmosDecoder(cfg), cfg, str(src))  # refuse another tokenizer's file
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp),
              metadata={"converted_from": src.name, "format": "cosmos-jit"})
    tmp.replace(dst)  # never leave a half-written file under the final name
    return dst


def activation_bytes(cfg: CosmosConfig, image_size: int, images: int, itemsize: int = 2) -> int:
    """Estimated peak activation memory of decoding ``images`` at ``image_size`` px at once.

    The widest map is the last up level's input: ``C = channels * channels_mult[-1]`` channels at
    ``image_size / patch_size`` squared. About eight such maps live at once in its resnet blocks (input,
    norm, SiLU, the three-frame replicate pad of a causal temporal conv, conv output, residual)."""
    side = image_size // cfg.patch_size
    return 8 * images * cfg.channels * cfg.channels_mult[-1] * side * side * itemsize


def weight_bytes(cfg: CosmosConfig = DV8x16x16, itemsize: int = 2) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in CosmosDecoder(cfg).parameters()) * itemsize


DECODE_BUDGET = 2 * 2**30  # activation bytes one decoder call may use


def decode_chunk(cfg: CosmosConfig, image_size: int, itemsize: int = 4, budget: int = DECODE_BUDGET) -> int:
    """Images decoded per call so that :func:`activation_bytes` stays under ``budget``."""
    return max(1, budget // activation_bytes(cfg, image_size, 1, itemsize))
