"""SimpleAR's prompt frame (its ``generate.py``): the conditional row is ``<|t2i|>`` + "A highly realistic
image of " + prompt + ``<|soi|>``; the unconditional row is a fixed negative prompt in the same frame. Image
token ids follow the whole text vocabulary: code ``c`` is token ``len(tokenizer) + c``."""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import echo

T2I, SOI = "<|t2i|>", "<|soi|>"
SPECIAL_TOKENS = ("<|t2i|>", "<|i2t|>", "<|soi|>", "<|vtokens|>", "<|t2v|>", "<|v2t|>", "<|sov|>")
PREFIX = "A highly realistic image of "
NEGATIVE = ("An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
            "bad teeth, bad eyes, bad limbs, distortion")


class SimpleARPrompt:
    """Token rows for a prompt, from the checkpoint's own tokenizer (its added special tokens checked)."""

    def __init__(self, tokenizer, source: str | Path = "the tokenizer"):
        vocab = tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{source} lacks SimpleAR's special tokens {', '.join(missing)}: it is a plain text "
                             f"tokenizer, not a SimpleAR checkpoint's. Use the tokenizer files of the SimpleAR "
                             f"repository (Daniel0724/SimpleAR-*)")
        self.tokenizer = tokenizer
        self.offset = len(tokenizer)  # SimpleAR's generate.py subtracts len(tokenizer), not config.vocab_size

    def _ids(self, text: str, frame: bool = True) -> torch.Tensor:
        # the frame is tokenized as SimpleAR does (the tokenizer's default call: no BOS for Qwen2)
        return torch.tensor(self.tokenizer(text, add_special_tokens=frame)["input_ids"], dtype=torch.long)

    def ids(self, prompt: str) -> torch.Tensor:
        prompt = str(prompt)
        if not self._ids(prompt, frame=False).numel():
            raise ValueError(f"the prompt {echo(prompt)} encodes to no tokens: write a description of the image")
        return self._ids(T2I + PREFIX + prompt + SOI)

    def unconditional(self) -> torch.Tensor:
        return self._ids(T2I + NEGATIVE + SOI)
