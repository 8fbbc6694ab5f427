"""Janus-Pro architectures as transformers ``JanusConfig`` objects, from the published values.

Language models: DeepSeek-LLM 1.5B / 7B as listed in the Janus-Pro paper (arXiv 2501.17811, Table 1:
vocabulary 100K, width 2048 / 4096, 16 / 32 heads, 24 / 30 layers) with the DeepSeek-LLM FFN widths 5632 /
11008, 102400-entry vocabulary and 16384 positions of the released ``language_config``. Image generation:
the released ``gen_vision_config`` (VQ-16, 16384 codes of 8 dims), ``gen_aligner_config`` (2-layer MLP to
the LM width) and ``gen_head_config`` (LM width -> LM width -> 16384); SigLIP-L at 384 px with 16 px
patches, so 24 x 24 = 576 image tokens. Special tokens: ``<image_placeholder>`` 100581 (transformers'
default ``image_token_id``). These configs only size the model (presets, memory table, meta-device
construction); a downloaded folder's own ``config.json`` is what a load uses.
"""
from __future__ import annotations

import functools

PUBLISHED = {
    # name: (hidden, ffn, layers, heads)
    "1B": (2048, 5632, 24, 16),
    "7B": (4096, 11008, 30, 32),
}
VOCAB = 102400
POSITIONS = 16384
CODEBOOK = 16384
IMAGE_SIZE = 384
PATCH = 16
IMAGE_TOKEN_ID = 100581


def janus_config(size: str):
    """The ``JanusConfig`` of Janus-Pro-``size`` ("1B" or "7B")."""
    from transformers import JanusConfig

    if size not in PUBLISHED:
        raise ValueError(f"unknown Janus-Pro size {size!r}: known sizes are {', '.join(PUBLISHED)}")
    hidden, ffn, layers, heads = PUBLISHED[size]
    text = dict(model_type="llama", vocab_size=VOCAB, hidden_size=hidden, intermediate_size=ffn,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                max_position_embeddings=POSITIONS, rms_norm_eps=1e-6)
    vision = dict(image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=hidden, depth=2,
                  num_image_tokens=(IMAGE_SIZE // PATCH) ** 2)
    vq = dict(embed_dim=8, num_embeddings=CODEBOOK, projection_dim=hidden, image_token_embed_dim=hidden,
              num_hidden_layers=2)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=IMAGE_TOKEN_ID)


def grid_side(config) -> int:
    """Image tokens per side: the VQ latent grid (``vq_config.num_patches`` = image size / patch size)."""
    return config.vision_config.image_size // config.vision_config.patch_size


def image_size(config) -> int:
    """Pixels per side of a decoded image: the grid times the VQ decoder's upsampling."""
    return grid_side(config) * 2 ** (len(config.vq_config.channel_multiplier) - 1)


@functools.lru_cache(maxsize=None)
def part_params(size: str) -> dict[str, int]:
    """Parameter counts of the parts text-to-image uses (and of the rest), from a meta-device model."""
    import torch
    from transformers import JanusForConditionalGeneration

    with torch.device("meta"):
        full = JanusForConditionalGeneration(janus_config(size))
    m = full.model
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    vq_decode = count(m.vqmodel.decoder) + count(m.vqmodel.post_quant_conv) + count(m.vqmodel.quantize)
    return {
        "language_model": count(m.language_model),
        "generation": count(m.generation_embeddings) + count(m.generation_aligner) + count(m.generation_head),
        "vq_decoder": vq_decode,
        # understanding-only (SigLIP tower, its aligner) and the VQ encoder; the text lm_head is skipped too
        "not_loaded": count(m.vision_model) + count(m.aligner) + count(m.vqmodel) - vq_decode,
    }
