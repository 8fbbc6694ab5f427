"""A tiny seeded model that implements the protocol, for testing the engine without real weights.

It is a small recurrent logits generator: each row carries a hidden state updated from the token it just
drew and its condition vector (the unconditional rows get none), so logits depend on the whole prefix and
on the condition, the cond/uncond halves differ, and ``keep`` has real per-row state to compact or copy.
"""
from __future__ import annotations

import hashlib

import torch

from ..models.protocol import SamplingDefaults


class ReferenceSession:
    def __init__(self, model: "ReferenceModel", condition: torch.Tensor, n: int, guidance: bool = True):
        self.model = model
        self.halves = 2 if guidance else 1
        c = condition.to(model.device).expand(n, -1)
        self.cond = torch.cat([c, torch.zeros_like(c)][: self.halves])  # [2n, d]: cond rows then uncond rows
        self.hidden = torch.tanh(self.cond)
        self.steps = 0

    @property
    def num_trajectories(self) -> int:
        return self.cond.shape[0] // self.halves

    def _logits(self) -> torch.Tensor:
        return (self.hidden @ self.model.unembed) * self.model.sharpness

    def prefill(self) -> torch.Tensor:
        return self._logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        both = torch.cat([tokens] * self.halves)  # the same token feeds the cond and the uncond row
        self.hidden = torch.tanh(self.hidden @ m.recur + m.embed[both] + self.cond)
        self.steps += 1
        return self._logits()

    admits = True

    def admit(self, conditions: list[torch.Tensor], counts: list[int]) -> torch.Tensor:
        """New trajectories join after the current ones in each half (continuous batching); returns their logits."""
        n, h = self.num_trajectories, self.halves
        new = [c.to(self.model.device).expand(k, -1) for c, k in zip(conditions, counts)]
        cond = torch.cat(new)
        rows = torch.cat([cond, torch.zeros_like(cond)][:h])
        hidden = torch.tanh(rows)
        self.cond = torch.cat([self.cond[:n], rows[: cond.shape[0]], self.cond[n:], rows[cond.shape[0]:]][: 2 * h])
        self.hidden = torch.cat([self.hidden[:n], hidden[: cond.shape[0]], self.hidden[n:], hidden[cond.shape[0]:]][: 2 * h])
        return (hidden @ self.model.unembed) * self.model.sharpness

    def keep(self, rows: torch.Tensor) -> None:
        n = self.num_trajectories
        both = torch.cat([rows, rows + n][: self.halves])
        self.cond = self.cond.index_select(0, both)
        self.hidden = self.hidden.index_select(0, both)


class ReferenceModel:
    """``vocab_size`` codes on an ``h × w`` grid; each code decodes to a flat colour patch."""

    def __init__(self, vocab_size: int = 64, grid: tuple[int, int] = (8, 8), dim: int = 32, seed: int = 0,
                 sharpness: float = 3.0, patch: int = 4, defaults: SamplingDefaults | None = None,
                 device: str = "cpu"):
        g = torch.Generator().manual_seed(seed)
        self.name = f"reference-{vocab_size}-{grid[0]}x{grid[1]}"
        self.vocab_size, self.grid, self.dim, self.patch = vocab_size, tuple(grid), dim, patch
        self.sharpness = sharpness
        self.defaults = defaults or SamplingDefaults(cfg_scale=2.0)
        self._device = torch.device(device)
        self.embed = (torch.randn(vocab_size, dim, generator=g) * 0.8).to(device)
        self.recur = (torch.randn(dim, dim, generator=g) / dim**0.5).to(device)
        self.unembed = (torch.randn(dim, vocab_size, generator=g) / dim**0.5).to(device)
        self.palette = torch.rand(vocab_size, 3, generator=g).to(device)

    @property
    def device(self) -> torch.device:
        return self._device

    def encode(self, prompt: str) -> torch.Tensor:
        digest = hashlib.sha256(prompt.encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        return torch.randn(1, self.dim, generator=g)

    def start(self, condition: torch.Tensor, n: int, guidance: bool = True) -> ReferenceSession:
        return ReferenceSession(self, condition, n, guidance)

    def start_batch(self, conditions: list[torch.Tensor], counts: list[int]) -> ReferenceSession:
        """One guided session for several runs: ``counts[i]`` rows of ``conditions[i]`` in each half."""
        rows = torch.cat([c.to(self.device).expand(k, -1) for c, k in zip(conditions, counts)])
        return ReferenceSession(self, rows, rows.shape[0])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        colours = self.palette[codes.to(self.device)]  # [n, T, 3]
        img = colours.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
        return img.repeat_interleave(self.patch, 2).repeat_interleave(self.patch, 3)
