"""A prompt as Janus-Pro sees it for image generation: the chat turn, then ``<begin_of_image>``.

A transformers-layout folder carries a processor with the model's chat template: the prompt is formatted
exactly as transformers' image generation does (``apply_chat_template(add_generation_prompt=True)``, then
``processor(text, generation_mode="image")``, which appends ``<begin_of_image>``). An original-layout folder
has only the tokenizer; it gets the same text the released chat format produces for one user turn with an
empty system prompt: ``<|User|>: {prompt}\\n\\n<|Assistant|>:<begin_of_image>``.

The unconditional row is the model's own: the same positions with every token but BOS and
``<begin_of_image>`` replaced by the pad token (what transformers' ``generate(generation_mode="image")``
and the original ``generation_inference.py`` feed for CFG).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

BOI = "<begin_of_image>"
PAD = "<｜▁pad▁｜>"
PUBLISHED_FORMAT = "<|User|>: {prompt}\n\n<|Assistant|>:" + BOI


@dataclass
class PromptFormat:
    """Turns text into the conditional token row and knows the ids of the unconditional row."""

    tokenizer: object
    processor: object | None
    bos_id: int
    pad_id: int
    boi_id: int

    @classmethod
    def from_folder(cls, folder: Path, kind: str) -> "PromptFormat":
        from transformers import AutoTokenizer

        processor = None
        if kind == "transformers":
            from transformers import JanusProcessor

            processor = JanusProcessor.from_pretrained(str(folder))
            tokenizer = processor.tokenizer
            if processor.chat_template is None:
                processor = None  # no template shipped: the published format below is the same turn
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        vocab = tokenizer.get_vocab()
        gen = _generation_config(folder)
        boi = (gen.get("generation_kwargs") or {}).get("boi_token_id", gen.get("boi_token_id", vocab.get(BOI)))
        pad = gen.get("pad_token_id", vocab.get(PAD, tokenizer.pad_token_id))
        bos = gen.get("bos_token_id", tokenizer.bos_token_id)
        missing = [n for n, v in (("<begin_of_image>", boi), ("pad", pad), ("BOS", bos)) if v is None]
        if missing:
            raise ValueError(f"the tokenizer in {folder} has no {', '.join(missing)} token: not a Janus-Pro tokenizer")
        return cls(tokenizer, processor, int(bos), int(pad), int(boi))

    def ids(self, prompt: str) -> torch.Tensor:
        """``[L]`` long: the conditional row, starting with BOS and ending with ``<begin_of_image>``."""
        if self.processor is not None:
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = self.processor(text=text, generation_mode="image", return_tensors="pt")["input_ids"][0]
        else:
            text = PUBLISHED_FORMAT.format(prompt=prompt.strip())
            ids = torch.tensor(self.tokenizer(text)["input_ids"], dtype=torch.long)
        if ids.numel() == 0 or int(ids[0]) != self.bos_id:
            ids = torch.cat([torch.tensor([self.bos_id]), ids])
        if int(ids[-1]) != self.boi_id:
            raise ValueError(f"the tokenizer does not keep {BOI} as one token (got {ids[-3:].tolist()} at the end)")
        return ids.long()

    def unconditional(self, ids: torch.Tensor) -> torch.Tensor:
        """Every token but BOS and ``<begin_of_image>`` replaced by pad (same length and positions)."""
        keep = (ids == self.bos_id) | (ids == self.boi_id)
        return torch.where(keep, ids, torch.full_like(ids, self.pad_id))


def _generation_config(folder: Path) -> dict:
    path = folder / "generation_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
