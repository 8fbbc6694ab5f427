"""What the transformers-based families' decode sessions share: ``2n`` rows (``n`` without guidance) over
transformers' ``StaticCache``, the prefix run once for one conditional and one unconditional row and then
copied out, ``keep`` reordering (and with repeats copying) every cached row."""
from __future__ import annotations

import inspect

import torch

from .protocol import keep_rows, step_tokens


MIN_TRANSFORMERS = "5.24"  # the release the oracle tests pass on (the pack only needs >=4.40 for T5)


def check_transformers(family: str) -> None:
    """A clear error instead of a deep one when the installed transformers predates the verified range."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
        raise RuntimeError(f"{family} needs transformers >= {MIN_TRANSFORMERS} (this environment has "
                           f"{transformers.__version__}): run `pip install -U 'transformers>={MIN_TRANSFORMERS},<6'` "
                           f"in the Python that runs ComfyUI (or `pip install -r requirements.txt` in this pack)")


def cache_keyword(decoder) -> str:
    """transformers renamed the decoder's cache argument ``past_key_values`` -> ``cache`` in the 5.x line."""
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class CachedCFGSession:
    """The engine's DecodeSession around a family's ``_prefill_logits()`` (the ``[halves, V]`` logits of the
    prefix rows) and ``_step_logits(tokens)`` (``tokens`` ``[rows]`` appended at ``self._pos``). A subclass
    sets ``cache``, ``device``, ``_prefix`` ``[halves, L]``, ``_end`` and calls :meth:`_start`."""

    cache: object
    device: torch.device
    _prefix: torch.Tensor
    _end: int

    def _start(self, n: int, guidance: bool) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._halves = 2 if guidance else 1  # without guidance (CFG <= 1) only the conditional rows
        self._n, self._pos = n, None

    @property
    def num_trajectories(self) -> int:
        return self._n

    def _reorder(self, rows: torch.Tensor) -> None:
        """Every per-row state follows ``rows`` (indices into the current rows)."""
        self.cache.reorder_cache(rows)

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._pos is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        logits = self._prefill_logits()  # one conditional (and one unconditional) row
        self._pos = self._prefix.shape[1]
        spread = torch.arange(self._halves, device=self.device).repeat_interleave(self._n)  # [0]*n + [1]*n
        self._reorder(spread)
        return logits.index_select(0, spread)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._pos is None:
            raise RuntimeError("call prefill() before step()")
        if self._pos >= self._end:
            raise RuntimeError(f"all {self._end - self._prefix.shape[1]} image positions are already decoded")
        tokens = step_tokens(tokens, self._n, self.device)
        logits = self._step_logits(torch.cat([tokens] * self._halves))
        self._pos += 1
        return logits

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = keep_rows(rows, self._n, self.device)
        if self._pos is not None:  # before prefill nothing is cached: the rows are spread at prefill
            self._reorder(torch.cat([rows, rows + self._n][: self._halves]))
        self._n = rows.numel()
