"""LlamaGen (text-to-image and class-to-image) and AR-GRPO: our own implementation of the public models.

``gpt`` (transformer), ``session`` (cached CFG decoding), ``vq`` (VQ-16 image tokenizer), ``text_encoder``
(FLAN-T5), ``checkpoints`` (safe loading), ``download`` (Hugging Face files), ``adapter`` (the engine's
ARModel) and ``presets`` (registry entries).
"""
from ..gpt import GPT, PRESETS, GPTConfig, gpt_config
from ..gpt_session import GPTSession

__all__ = ["GPT", "GPTConfig", "GPTSession", "PRESETS", "gpt_config"]
