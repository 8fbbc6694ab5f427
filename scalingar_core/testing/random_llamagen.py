"""A randomly initialised LlamaGen GPT behind the model protocol (c2i: the condition is a class id), for
benchmarks at real model sizes without weights. Its images are blank: only decoding speed means anything."""
from __future__ import annotations

import torch

from ..models.gpt import GPT, gpt_config
from ..models.gpt_session import GPTSession
from ..models.protocol import SamplingDefaults


class RandomLlamaGen:
    def __init__(self, preset: str = "B", image_size: int = 256, seed: int = 0, device="cpu", dtype=torch.float32):
        torch.manual_seed(seed)
        with torch.device(device):  # initialise on the device: seconds, not minutes, for large presets
            self.gpt = GPT(gpt_config(preset, model_type="c2i", image_size=image_size)).eval()
            torch.nn.init.normal_(self.gpt.output.weight, std=0.02)  # upstream zero-inits it: logits would be flat
        self.gpt.to(dtype)
        g = self.gpt.config.grid
        self.name, self.vocab_size, self.grid = f"random-GPT-{preset}", self.gpt.config.vocab_size, (g, g)
        self.defaults = SamplingDefaults(cfg_scale=4.0, top_k=0)
        self.compile_decode = False
        self.device = torch.device(device)

    def encode(self, prompt: str) -> int:
        return int(prompt)

    def start(self, condition, n, guidance=True):
        return GPTSession(self.gpt, condition, n, guidance=guidance, inputs=lambda c: (torch.tensor([c]), None),
                          compiled=self.compile_decode)

    def decode(self, codes):
        return torch.zeros(codes.shape[0], 3, 16, 16, device=self.device)
