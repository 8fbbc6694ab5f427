"""A test model whose logits turn NaN or infinite for chosen trajectories from a chosen step: the reference
model with a session wrapper (what fp16 overflow or a bad weight does to a real model)."""
from scalingar_core.testing.reference_model import ReferenceModel


class PoisonedSession:
    """From step ``at`` on, the rows of trajectories ``victims`` (original indices, followed through ``keep``)
    return ``value``: in the conditional half, the unconditional half or both."""

    def __init__(self, inner, n, victims, at, value, half):
        self.inner, self.victims, self.at, self.value, self.half = inner, set(victims), at, value, half
        self.ids = list(range(n))
        self.t = 0

    @property
    def num_trajectories(self):
        return self.inner.num_trajectories

    def _poison(self, logits):
        if self.t >= self.at:
            m = len(self.ids)
            for row, i in enumerate(self.ids):
                if i in self.victims:
                    if self.half in ("cond", "both"):
                        logits[row] = self.value
                    if self.half in ("uncond", "both"):
                        logits[row + m] = self.value
        self.t += 1
        return logits

    def prefill(self):
        return self._poison(self.inner.prefill())

    def step(self, tokens):
        return self._poison(self.inner.step(tokens))

    def keep(self, rows):
        self.inner.keep(rows)
        self.ids = [self.ids[r] for r in rows.tolist()]


class PoisonedModel:
    def __init__(self, victims, at, value=float("nan"), half="cond"):
        self.inner = ReferenceModel(grid=(8, 8))
        self.name, self.vocab_size, self.grid, self.defaults = "poisoned", 64, (8, 8), self.inner.defaults
        self.victims, self.at, self.value, self.half = victims, at, value, half
        self.unembed = self.inner.unembed  # the weights' dtype, for the error message

    @property
    def device(self):
        return self.inner.device

    def encode(self, prompt):
        return self.inner.encode(prompt)

    def start(self, condition, n, guidance=True):
        return PoisonedSession(self.inner.start(condition, n, guidance=guidance), n, self.victims, self.at, self.value,
                               self.half)

    def decode(self, codes):
        return self.inner.decode(codes)
