"""LlamaGen's GPT (text-to-image and class-to-image) in plain PyTorch, state-dict compatible with upstream.

Layout facts (``docs/models.md``): a condition prefix of ``cls_token_num`` positions followed by
``block_size`` raster-order image tokens; pre-norm Llama blocks (RMSNorm in fp32, fused ``wqkv``, SwiGLU);
2D RoPE on interleaved channel pairs, first half of each head on the row index and second half on the
column index, with **all-zero** cos/sin at prefix positions (so prefix q/k are zero vectors and the
condition reaches image tokens only through the values); logits in fp32.

Only inference behaviour is reproduced: there is no dropout (upstream's dropouts are inactive in eval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F


def _round_up(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


@dataclass(frozen=True)
class GPTConfig:
    dim: int
    n_layer: int
    n_head: int
    n_kv_head: int | None = None  # None = plain multi-head attention (every released model)
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000
    norm_eps: float = 1e-5
    vocab_size: int = 16384
    block_size: int = 256  # number of image tokens; a square grid
    cls_token_num: int = 120  # prefix length (c2i: 1)
    caption_dim: int = 2048  # T5 hidden size (t2i)
    null_caption_len: int = 120  # rows of uncond_embedding (upstream hard-codes 120)
    model_type: str = "t2i"  # 't2i' or 'c2i'
    num_classes: int = 1000  # c2i; the label table has one extra null row

    def __post_init__(self):
        if self.model_type not in ("t2i", "c2i"):
            raise ValueError(f"model_type must be 't2i' or 'c2i', got {self.model_type!r}")
        if self.dim % self.n_head:
            raise ValueError(f"dim {self.dim} is not divisible by n_head {self.n_head}")
        if self.head_dim % 4:
            raise ValueError(f"head_dim {self.head_dim} must be a multiple of 4 for 2D RoPE")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.kv_heads}")
        if self.grid ** 2 != self.block_size:
            raise ValueError(f"block_size {self.block_size} is not a square number of image tokens")
        if self.model_type == "c2i" and self.cls_token_num != 1:
            raise ValueError(f"a c2i model has a 1-token class prefix, got cls_token_num={self.cls_token_num}")
        if self.model_type == "t2i" and self.null_caption_len < self.cls_token_num:
            raise ValueError(f"null_caption_len {self.null_caption_len} < cls_token_num {self.cls_token_num}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ffn_hidden(self) -> int:
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return _round_up(hidden, self.multiple_of)

    @property
    def grid(self) -> int:
        return math.isqrt(self.block_size)

    @property
    def seq_len(self) -> int:
        """Positions a full sequence can occupy: prefix plus every image token."""
        return self.cls_token_num + self.block_size


# Upstream GPT_models: name -> (dim, n_layer, n_head).
PRESETS: dict[str, tuple[int, int, int]] = {
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1280, 36, 20),
    "XXL": (1536, 48, 24),
    "XXXL": (2560, 48, 40),
    "1B": (2048, 22, 32),
    "3B": (3200, 24, 32),
    "7B": (4096, 32, 32),
}


def gpt_config(preset: str, model_type: str = "t2i", image_size: int = 256, **overrides) -> GPTConfig:
    """The upstream config for a preset at ``image_size`` px (VQ downsample 16): t2i prefix 120, c2i 1."""
    if preset not in PRESETS:
        raise ValueError(f"unknown GPT preset {preset!r}: known presets are {', '.join(PRESETS)}")
    if image_size % 16:
        raise ValueError(f"image_size {image_size} is not a multiple of the VQ downsample factor 16")
    dim, n_layer, n_head = PRESETS[preset]
    cfg = GPTConfig(dim=dim, n_layer=n_layer, n_head=n_head, model_type=model_type,
                    block_size=(image_size // 16) ** 2, cls_token_num=120 if model_type == "t2i" else 1)
    return replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------------------------------
# 2D RoPE


def rope_table(cfg: GPTConfig, device=None) -> torch.Tensor:
    """``[cls_token_num + block_size, head_dim/2, 2]`` fp32 (cos, sin); prefix rows are all zero."""
    quarter = cfg.head_dim // 4
    freqs = 1.0 / (cfg.rope_base ** (torch.arange(quarter, device=device, dtype=torch.float32) * 2
                                     / (cfg.head_dim // 2)))
    idx = torch.arange(cfg.grid, device=device, dtype=torch.float32)
    angle = torch.outer(idx, freqs)  # [grid, quarter]
    g = cfg.grid
    # position k = row*grid + col: first quarter of the pairs turns with the row, second with the column
    grid_angle = torch.cat([angle[:, None, :].expand(g, g, quarter), angle[None, :, :].expand(g, g, quarter)],
                           dim=-1).reshape(g * g, 2 * quarter)
    image = torch.stack([grid_angle.cos(), grid_angle.sin()], dim=-1)
    prefix = torch.zeros(cfg.cls_token_num, 2 * quarter, 2, device=device)  # zero, not identity: upstream
    return torch.cat([prefix, image])


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x [B, L, H, D]`` by ``rope [B or 1, L, D/2, 2]`` in fp32."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = rope[:, :, None, :, 0], rope[:, :, None, :, 1]
    a, b = xs[..., 0], xs[..., 1]
    out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return out.flatten(-2).type_as(x)


# ---------------------------------------------------------------------------------------------------------
# Modules (attribute names are the upstream state-dict keys)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class KVCache:
    """Static per-layer cache (gpt-fast style): ``k``/``v`` ``[rows, kv_heads, seq, head_dim]`` are views of the
    first ``rows`` rows of one allocation. Writes go to slots named by a tensor, so no shape changes while
    decoding, and compacting the batch moves rows inside the allocation (a captured graph keeps its addresses)."""

    def __init__(self, rows: int, heads: int, seq: int, head_dim: int, dtype, device):
        self._k = torch.zeros(rows, heads, seq, head_dim, dtype=dtype, device=device)
        self._v = torch.zeros_like(self._k)
        self.k, self.v = self._k, self._v

    def update(self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int | tuple | None):
        """Write ``k, v [rows, H, L, D]`` at cache slots ``slots [L]`` (every row at the same slots), or, for one
        new position per row, ``slots [rows, 1]`` (each row at its own slot: rows at different steps share a
        batch); return what attention reads: the first ``kv_len`` slots, or the whole static length when
        ``kv_len`` is None (a mask then hides the rest)."""
        if slots.dim() == 2:
            rows = torch.arange(k.shape[0], device=k.device)
            self.k[rows, :, slots[:, 0]] = k[:, :, 0]
            self.v[rows, :, slots[:, 0]] = v[:, :, 0]
        else:
            self.k.index_copy_(2, slots, k)
            self.v.index_copy_(2, slots, v)
        if not isinstance(kv_len, int):  # the whole static length (a mask hides the rest), or runs of rows
            return self.k, self.v
        return self.k[:, :, :kv_len], self.v[:, :, :kv_len]

    def clear(self) -> None:
        """Zero the whole allocation (every row, every slot)."""
        self._k.zero_()
        self._v.zero_()

    def load(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Rows ``0..B-1``, slots ``0..L-1`` become ``k, v [B, H, L, D]``, and those ``B`` rows the live ones."""
        m, length = k.shape[0], k.shape[2]
        if m > self._k.shape[0]:
            self._k = self._k.new_zeros(m, *self._k.shape[1:])
            self._v = torch.zeros_like(self._k)
        self._k[:m, :, :length] = k
        self._v[:m, :, :length] = v
        self.k, self.v = self._k[:m], self._v[:m]

    def select(self, idx: torch.Tensor, length: int, start: int = 0) -> None:
        """Rows ``idx`` (repeats allowed) become rows ``0..len(idx)-1``; only the first ``length`` slots are
        copied since nothing beyond them has been written yet, and rows before ``start`` (where ``idx[j] = j``)
        are not copied at all."""
        m = idx.numel()
        if m > self._k.shape[0]:  # more rows than were allocated: grow once
            k = self._k.new_zeros(m, *self._k.shape[1:])
            v = torch.zeros_like(k)
            start = 0
        else:
            k, v = self._k, self._v
        # index_select materialises the source rows first, so overlapping in-place copies are safe
        k[start:m, :, :length] = self.k[:, :, :length].index_select(0, idx[start:])
        v[start:m, :, :length] = self.v[:, :, :length].index_select(0, idx[start:])
        self._k, self._v = k, v
        self.k, self.v = k[:m], v[:m]

    def grow(self, m: int, length: int) -> None:
        """Rows ``0..m-1`` become the live ones, the current rows keep their places (new rows: whatever the
        allocation holds). Doubles the allocation when it is too small, copying the first ``length`` slots."""
        if m > self._k.shape[0]:
            k = self._k.new_zeros(max(m, 2 * self._k.shape[0]), *self._k.shape[1:])
            v = torch.zeros_like(k)
            live = self.k.shape[0]
            k[:live, :, :length], v[:live, :, :length] = self.k[:, :, :length], self.v[:, :, :length]
            self._k, self._v = k, v
        self.k, self.v = self._k[:m], self._v[:m]


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.kv_heads, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, rope, mask, cache: KVCache | None = None, slots=None, kv_len: int | tuple | None = None):
        B, L, _ = x.shape
        hd = self.head_dim
        q, k, v = self.wqkv(x).split([self.n_head * hd, self.kv_heads * hd, self.kv_heads * hd], dim=-1)
        q = apply_rope(q.view(B, L, self.n_head, hd), rope).transpose(1, 2)
        k = apply_rope(k.view(B, L, self.kv_heads, hd), rope).transpose(1, 2)
        v = v.view(B, L, self.kv_heads, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(slots, k, v, kv_len)
        if isinstance(kv_len, tuple):  # runs of rows at their own step: each attends its own written slots
            y = torch.cat([self._attend(q[a:b], k[a:b, :, :n], v[a:b, :, :n], None) for a, b, n in kv_len])
        else:
            y = self._attend(q, k, v, mask)
        return self.wo(y.transpose(1, 2).reshape(B, L, -1))

    def _attend(self, q, k, v, mask):
        if self.kv_heads != self.n_head:
            rep = self.n_head // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, rope, mask, cache=None, slots=None, kv_len=None):
        h = x + self.attention(self.attention_norm(x), rope, mask, cache, slots, kv_len)
        return h + self.feed_forward(self.ffn_norm(h))


class CaptionMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim, bias=False)
        self.fc2 = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CaptionEmbedder(nn.Module):
    """T5 features -> prefix embeddings. The null caption lives in T5 space, before the MLP."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cap_proj = CaptionMLP(cfg.caption_dim, cfg.dim)
        self.register_buffer("uncond_embedding", torch.zeros(cfg.null_caption_len, cfg.caption_dim))


class LabelEmbedder(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.embedding_table = nn.Embedding(cfg.num_classes + 1, cfg.dim)  # row num_classes = null class


# ---------------------------------------------------------------------------------------------------------


class GPT(nn.Module):
    """LlamaGen GPT. ``forward`` is teacher forcing (training/tests); :class:`GPTSession` decodes with a cache."""

    def __init__(self, cfg: GPTConfig, init: bool = True):
        super().__init__()
        self.config = cfg
        self.cls_embedding = CaptionEmbedder(cfg) if cfg.model_type == "t2i" else LabelEmbedder(cfg)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self._rope: dict[torch.device, torch.Tensor] = {}  # fp32 per device; not state (upstream: not a buffer)
        if init:
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Upstream init: N(0, 0.02) for Linear/Embedding, zero ``output``, null caption randn/sqrt(dim)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.output.weight)
        if self.config.model_type == "t2i":
            emb = self.cls_embedding.uncond_embedding
            emb.copy_(torch.randn(emb.shape, device=emb.device) / math.sqrt(self.config.caption_dim))

    # -- pieces shared by teacher forcing and the cached session --------------------------------------

    def rope(self, device) -> torch.Tensor:
        device = torch.device(device)
        if device not in self._rope:
            # built outside inference mode so a table first made while decoding still works for training
            with torch.inference_mode(False), torch.no_grad():
                self._rope[device] = rope_table(self.config, device=device)
        return self._rope[device]

    def embed_condition(self, cond: torch.Tensor | None, rows: int | None = None) -> torch.Tensor:
        """Prefix embeddings ``[B, cls_token_num, dim]``.

        t2i: ``cond`` is T5 features ``[B, >=cls_token_num, caption_dim]``; ``None`` = the null caption
        (``uncond_embedding`` broadcast to ``rows``). c2i: ``cond`` is labels ``[B]`` long; ``None`` = the
        null class ``num_classes``."""
        cfg = self.config
        dtype = self.tok_embeddings.weight.dtype
        if cfg.model_type == "t2i":
            if cond is None:
                cond = self.cls_embedding.uncond_embedding[None].expand(rows, -1, -1)
            if cond.dim() != 3 or cond.shape[-1] != cfg.caption_dim or cond.shape[1] < cfg.cls_token_num:
                raise ValueError(f"caption features must be [B, >= {cfg.cls_token_num}, {cfg.caption_dim}], "
                                 f"got {tuple(cond.shape)}")
            return self.cls_embedding.cap_proj(cond[:, : cfg.cls_token_num].to(dtype))
        if cond is None:
            cond = torch.full((rows,), cfg.num_classes, dtype=torch.long, device=self.tok_embeddings.weight.device)
        cond = torch.as_tensor(cond, device=self.tok_embeddings.weight.device).long().reshape(-1)
        if cond.numel() and (cond.min() < 0 or cond.max() > cfg.num_classes):
            raise ValueError(f"class labels must be in [0, {cfg.num_classes}] ({cfg.num_classes} = null), "
                             f"got {cond.tolist()}")
        return self.cls_embedding.embedding_table(cond)[:, None]

    def key_mask(self, prefix_mask: torch.Tensor | None, rows: int, length: int, device) -> torch.Tensor:
        """``[rows, length]`` bool: which key positions may be attended (prefix per the caption mask)."""
        T = self.config.cls_token_num
        ok = torch.ones(rows, length, dtype=torch.bool, device=device)
        if prefix_mask is not None:
            if prefix_mask.shape[-1] < T:
                raise ValueError(f"caption mask must have >= {T} columns, got {tuple(prefix_mask.shape)}")
            ok[:, :T] = prefix_mask[..., :T].to(device=device, dtype=torch.bool).expand(rows, T)
        return ok

    @staticmethod
    def attention_mask(key_ok: torch.Tensor, q_start: int, q_len: int) -> torch.Tensor:
        """``[rows, 1, q_len, q_start+q_len]`` bool: causal, keys per ``key_ok``, diagonal forced True."""
        k_len = q_start + q_len
        q_pos = torch.arange(q_start, k_len, device=key_ok.device)[:, None]
        k_pos = torch.arange(k_len, device=key_ok.device)[None, :]
        mask = (k_pos <= q_pos)[None] & key_ok[:, None, :k_len]
        return (mask | (k_pos == q_pos)[None])[:, None]

    def trunk(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
              caches: list[KVCache] | None = None, slots: torch.Tensor | None = None,
              kv_len: int | tuple | None = None) -> torch.Tensor:
        """Run the blocks on embeddings ``x [B, L, dim]`` rotated by ``rope [1, L, D/2, 2]``. With caches, each
        layer writes its k/v at ``slots [L]`` and attends the first ``kv_len`` cache slots (None: all of them)."""
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, caches[i] if caches is not None else None, slots, kv_len)
        return x

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, rope_pos: torch.Tensor, slot: torch.Tensor, caches: list[KVCache],
                    rope: torch.Tensor, kv_len: int | tuple | None = None) -> torch.Tensor:
        """One cached decode step for every row: fp32 logits ``[B, V]`` after ``tokens [B]``.

        The token sits at sequence position ``rope_pos`` (its RoPE row, gathered from the table ``rope``) and
        its k/v go to cache slot ``slot``: ``[1]`` both when every row is at the same step, or ``[B]`` and
        ``[B, 1]`` when each row has its own (continuous batching). ``kv_len=None`` is the static-shape form
        that ``torch.compile`` captures once for every step: the query attends the whole cache through the
        mask row "slots <= slot". An int attends only the first ``kv_len`` slots, all written, with one
        shared slot (eager decoding: no mask, so SDPA may use its fused kernels). With per-row slots,
        ``kv_len`` is a tuple of runs ``(first row, end row, length)``: rows at the same step sit together, and
        each run attends its own written slots without a mask (it costs its own length, not the longest)."""
        x = self.tok_embeddings(tokens)[:, None]
        mask = None
        if kv_len is None:
            seq = caches[0].k.shape[2]
            mask = (torch.arange(seq, device=slot.device) <= slot.reshape(-1, 1)).view(-1, 1, 1, seq)
        h = self.trunk(x, rope.index_select(0, rope_pos)[:, None], mask, caches, slot, kv_len)
        return self.head(h[:, -1])

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.output(self.norm(h)).float()

    # -- teacher forcing --------------------------------------------------------------------------------

    def forward(self, cond, tokens: torch.Tensor, cond_mask: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits ``[B, N, V]`` predicting image tokens ``tokens [B, N]`` from the prefix and tokens < i.

        ``cond``: t2i features ``[B, L, caption_dim]`` or c2i labels ``[B]``; ``cond_mask [B, L]`` (t2i, 1 =
        valid token; None = all valid); ``drop [B]`` bool replaces a row's condition with the null one
        (classifier-free-guidance training; t2i keeps that row's caption mask, like upstream)."""
        B, N = tokens.shape
        cfg = self.config
        if N > cfg.block_size:
            raise ValueError(f"{N} image tokens exceed block_size {cfg.block_size}")
        prefix = self.embed_condition(cond)
        if drop is not None:
            null = self.embed_condition(None, rows=B)
            prefix = torch.where(drop.to(prefix.device).view(B, 1, 1), null, prefix)
        x = torch.cat([prefix, self.tok_embeddings(tokens[:, :-1])], dim=1)
        key_ok = self.key_mask(cond_mask if cfg.model_type == "t2i" else None, B, x.shape[1], x.device)
        mask = self.attention_mask(key_ok, 0, x.shape[1])
        h = self.trunk(x, self.rope(x.device)[None, : x.shape[1]], mask)
        return self.head(h[:, cfg.cls_token_num - 1:])

    # -- caches ---------------------------------------------------------------------------------------

    def new_caches(self, rows: int, seq: int | None = None, dtype=None) -> list[KVCache]:
        """One static cache per layer for ``rows`` sequences (default length: prefix + every image token)."""
        cfg = self.config
        w = self.tok_embeddings.weight
        return [KVCache(rows, cfg.kv_heads, seq or cfg.seq_len, cfg.head_dim, dtype or w.dtype, w.device)
                for _ in self.layers]


def kv_cache_bytes(cfg: GPTConfig, rows: int, bytes_per_elem: int = 2) -> int:
    """Bytes of the static KV cache for ``rows`` sequences of ``cls_token_num + block_size`` positions."""
    return 2 * cfg.n_layer * rows * cfg.kv_heads * cfg.seq_len * cfg.head_dim * bytes_per_elem


def param_count(cfg: GPTConfig, with_buffers: bool = False) -> int:
    """Parameters of a GPT built from ``cfg`` (analytic; ``with_buffers`` adds the t2i null caption)."""
    d, hd = cfg.dim, cfg.head_dim
    layer = (d * (cfg.n_head + 2 * cfg.kv_heads) * hd + d * d  # wqkv, wo
             + 3 * d * cfg.ffn_hidden + 2 * d)  # SwiGLU, two norms
    if cfg.model_type == "t2i":
        cond = cfg.caption_dim * d + d * d
    else:
        cond = (cfg.num_classes + 1) * d
    total = cond + 2 * cfg.vocab_size * d + cfg.n_layer * layer + d
    if with_buffers and cfg.model_type == "t2i":
        total += cfg.null_caption_len * cfg.caption_dim
    return total
