"""A tiny learned caption encoder for the toy vocabulary (the toy model's stand-in for FLAN-T5).

Caption → word ids, left-padded to ``CAPTION_LEN`` = 8 slots (LlamaGen's layout: valid tokens at the end) →
word + slot embeddings → one pre-norm transformer layer → features ``[B, 8, caption_dim]``. These feed the
GPT's caption-prefix path (``cls_embedding.cap_proj``) exactly as T5 features do for LlamaGen.

The mask returned with the features is all ones: pad slots carry a learned pad embedding instead of being
masked, so the null caption (used for the unconditional half of CFG) attends to the same 8 slots for every
prompt and the unconditional prediction cannot learn the caption's length.

The learned null caption (``null``, ``[8, caption_dim]``) lives here during training so it receives
gradients; ``model.py`` copies it into the GPT's ``cls_embedding.uncond_embedding`` for decoding.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...errors import echo
from .prompts import NUMBERS
from .render import COLORS, SHAPES

CAPTION_LEN = 8
PAD = "<pad>"
VOCAB = (PAD, "a", *NUMBERS, *COLORS, *SHAPES, *(s + "s" for s in SHAPES),
         "and", "left", "right", "of", "above", "below")


def tokenize(prompts: list[str] | str) -> torch.Tensor:
    """Captions → ``[B, 8]`` long word ids, left-padded with ``<pad>`` (id 0)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    index = {w: i for i, w in enumerate(VOCAB)}
    out = torch.zeros(len(prompts), CAPTION_LEN, dtype=torch.long)
    for row, p in enumerate(prompts):
        words = p.lower().strip().rstrip(".").split()
        unknown = [w for w in words if w not in index or w == PAD]
        if unknown:
            raise ValueError(f"caption {echo(p)} has words outside the toy-shapes vocabulary: {echo(unknown)}. "
                             f"Known words: {' '.join(VOCAB[1:])} (e.g. 'two red circles', "
                             "'a red circle left of a blue square')")
        if not words or len(words) > CAPTION_LEN:
            raise ValueError(f"caption {echo(p)} has {len(words)} words; toy-shapes captions have 1..{CAPTION_LEN}")
        out[row, CAPTION_LEN - len(words):] = torch.tensor([index[w] for w in words])
    return out


class CaptionEncoder(nn.Module):
    def __init__(self, width: int = 64, heads: int = 2):
        super().__init__()
        self.width = width
        self.words = nn.Embedding(len(VOCAB), width)
        self.slots = nn.Parameter(torch.zeros(CAPTION_LEN, width))
        self.layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.out_norm = nn.LayerNorm(width)
        self.null = nn.Parameter(torch.zeros(CAPTION_LEN, width))  # the learned null caption
        nn.init.normal_(self.words.weight, std=0.5)
        nn.init.normal_(self.slots, std=0.5)
        nn.init.normal_(self.null, std=1.0)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 8]`` word ids → (features ``[B, 8, width]``, mask ``[B, 8]`` bool, all True)."""
        x = self.words(ids) + self.slots
        x = self.out_norm(self.layer(x))
        return x, torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
