"""Profile level of ScalingAR: eqs. 5–8 (v1 5–12). Numbers are v3 (v1), as in ``docs/method.md``.

Each equation is one small function on tensors of a group's trajectories. :func:`profile_step` strings them
together for one decoding step over :class:`ProfileState`, a dataclass of device tensors indexed by
trajectory. Nothing here reads a value back to the host.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from .config import ProfileConfig
from .history import ring_forget, ring_mean_std, ring_min_max, ring_push
from .sampling import guided_logits

# ---------------------------------------------------------------- token-level signals (eqs. 3 (3), 5 (5))

def _unnormalised(logits: torch.Tensor, top: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """exp(ℓ − max ℓ), its row sums z and logsumexp ℓ: a softmax without the division, in few passes
    (the profile runs on every step over the whole vocabulary, so passes matter on CPU). ``top``: the row
    maxima ``[n, 1]`` when already known."""
    top = logits.amax(-1, keepdim=True) if top is None else top
    # below −87, exp underflows to denormals (slow on CPU) and contributes < 1e-38: clamp it away
    e = torch.exp((logits - top).clamp_min(-87.0))
    z = e.sum(-1, keepdim=True)
    return e, z.squeeze(-1), (top + z.log()).squeeze(-1)


def entropy_and_margin(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 5 (5) inputs: normalised entropy H̄ = H / log|V| and the top-1 minus top-2 probability margin m,
    plus logsumexp ℓ (for the other signals of the same distribution).

    ``logits`` ``[n, V]`` fp32 (already guided and divided by the temperature) over the full vocabulary."""
    logits = logits.clamp_min(-1e4)  # masked (−inf) tokens: p = 0 and a finite logit, so 0·ℓ = 0
    top2 = logits.topk(2, dim=-1).values  # a tie for the top gives margin 0
    e, z, lse = _unnormalised(logits, top2[..., :1])
    entropy = lse - torch.linalg.vecdot(e, logits) / z  # −Σ p log p = logsumexp ℓ − Σ p ℓ
    margin = torch.exp(top2[..., 0] - lse) - torch.exp(top2[..., 1] - lse)
    return entropy / math.log(logits.shape[-1]), margin, lse


def token_confidence(entropy_norm: torch.Tensor, margin: torch.Tensor, alpha_h: float, alpha_m: float) -> torch.Tensor:
    """Eq. 5 (5): c_t = 1 − u_t with u_t = α_H·H̄_t + α_M·(1 − m_t)."""
    return 1.0 - (alpha_h * entropy_norm + alpha_m * (1.0 - margin))


def ema(previous: torch.Tensor, value: torch.Tensor, rate: float) -> torch.Tensor:
    """The EMAs of eq. 5 (6), v3 §4.1.1 (8), v3 §4.1.2 (10) and eq. 9 (13): x_t = (1 − λ)·x_{t−1} + λ·value
    (λ weights the new value, A3), as one lerp."""
    return torch.lerp(previous, value, rate)


def self_certainty(logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """Self-certainty of one token (Kang et al.): KL(U ‖ p) = −(1/|V|)·Σ_j (log p_j + log|V|), with
    log p_j = logit_j − logsumexp (``logits`` as returned clamped by :func:`entropy_and_margin` callers)."""
    mean_logp = logits.mean(-1) - lse
    return -(mean_logp + math.log(logits.shape[-1]))


# ---------------------------------------------------------------- worst-block stability (eq. 6 (7))

def block_layout(grid: tuple[int, int], b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block index of every raster position and the capacity (cells) of every b×b block (edge blocks may
    be smaller when the grid is not a multiple of b)."""
    h, w = grid
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    nbw = -(-w // b)
    index = (rows // b) * nbw + cols // b
    capacity = torch.bincount(index, minlength=int(index.max()) + 1)
    return index, capacity


@dataclass(frozen=True)
class BlockSchedule:
    """What eq. 6 (7) may use after each step ``t``, fixed before the run: every trajectory sits at the same
    raster position, so the blocks' fill and eligibility depend on ``t`` alone (no per-step host work)."""

    count: torch.Tensor  # [T, K] float: cells of each block filled after position t (device)
    eligible: torch.Tensor  # [T, K] bool: fill ratio >= ρ_min (device)
    worst: list[int]  # [T] ⌈q·n_eligible⌉ blocks to average, 0 while none is eligible (host)
    cell: torch.Tensor  # [T, K] bool: the block position t falls in (device)
    worst_t: torch.Tensor  # [T] long: ``worst`` on the device (the compiled step reads it at a tensor step)

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This step's rows of the device tables: (cell, count, eligible, worst)."""
        i = t.view(1)
        return (self.cell.index_select(0, i)[0], self.count.index_select(0, i)[0],
                self.eligible.index_select(0, i)[0], self.worst_t.index_select(0, i)[0])


def block_schedule(grid: tuple[int, int], b: int, min_fill: float, worst_fraction: float, device) -> BlockSchedule:
    """The :class:`BlockSchedule` of a ``grid`` decoded in raster order with ``b×b`` blocks."""
    index, capacity = block_layout(grid, b)
    count = torch.nn.functional.one_hot(index, len(capacity)).cumsum(0).double()  # [T, K]
    eligible = count / capacity.double() >= min_fill - 1e-12
    worst = [max(1, math.ceil(worst_fraction * e)) if e else 0 for e in eligible.sum(1).tolist()]
    cell = torch.nn.functional.one_hot(index, len(capacity)).bool()
    return BlockSchedule(count.float().to(device), eligible.to(device), worst, cell.to(device),
                         torch.tensor(worst, device=device))


def worst_block_entropy(block_sum: torch.Tensor, count: torch.Tensor, eligible: torch.Tensor,
                        k: int | torch.Tensor) -> torch.Tensor:
    """Eq. 6 (7): Ē^worst_t, the mean of the worst ``k`` = ⌈q·n_eligible⌉ block means E_k (highest entropy)
    over the blocks whose fill ratio is at least ρ_min. NaN (not defined) when no block is eligible yet
    (``k`` = 0).

    ``block_sum`` ``[n, K]`` sums of H̄ per block; ``count`` ``[K]`` cells filled per block; ``eligible``
    ``[K]`` bool (one row of a :class:`BlockSchedule`). ``k`` a host int (eager), or a 0-d tensor (the
    compiled step: a fixed-width sum, so the graph does not depend on the step)."""
    means = (block_sum / count.clamp_min(1.0)).masked_fill(~eligible, float("-inf"))
    if isinstance(k, int):
        return means.topk(k, dim=-1).values.mean(-1) if k else torch.full_like(means[..., 0], float("nan"))
    top = means.sort(dim=-1, descending=True).values
    taken = torch.arange(means.shape[-1], device=means.device) < k
    return torch.where(taken, top, 0.0).sum(-1) / k  # 0 / 0 = NaN when k = 0


def rolling_minmax(value: torch.Tensor, low: torch.Tensor, high: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 6 (7): N^rolling(x) = (x − min_win) / (max_win − min_win + ε)."""
    return (value - low) / (high - low + eps)


def block_stability(worst: torch.Tensor, low: torch.Tensor, high: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 6 (7): B_t = 1 − N^rolling(Ē^worst_t)."""
    return 1.0 - rolling_minmax(worst, low, high, eps)


# ---------------------------------------------------------------- intrinsic channel (v3 §4.1.1 (8))

def intrinsic_raw(s_tok: torch.Tensor, block: torch.Tensor, w_tok: float, w_blk: float) -> torch.Tensor:
    """v3 §4.1.1 (8): I^raw_t = w_tok·s^tok_t + w_blk·B_t (then smoothed by :func:`ema` with λ_I)."""
    return w_tok * s_tok + w_blk * block


# ---------------------------------------------------------------- conditional channel (eq. 7 (9, 10))

def conditional_kl(cond_logits: torch.Tensor, uncond_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 7 (9): K_t = KL(p_c ‖ p_u) = Σ_v p_c(v)·[log p_c(v) − log p_u(v)] (temperature already applied).

    Computed as Σ p_c·(ℓ_c − ℓ_u) − logsumexp ℓ_c + logsumexp ℓ_u: the same value in fewer passes (fp32
    logits)."""
    e_c, z_c, lse_c = _unnormalised(cond_logits)
    lse_u = torch.logsumexp(uncond_logits, -1)
    return torch.linalg.vecdot(e_c, cond_logits - uncond_logits) / z_c - lse_c + lse_u


def rolling_zscore(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float) -> torch.Tensor:
    """v3 §4.1.2 (9): z_t = (K_t − μ^roll_t) / (σ^roll_t + ε)."""
    return (value - mean) / (std + eps)


def drift_score(z: torch.Tensor) -> torch.Tensor:
    """v3 §4.1.2 (10): D_t = σ(z_t), the logistic map into [0, 1] (RECONSTRUCTED form)."""
    return torch.sigmoid(z)


# ---------------------------------------------------------------- unified confidence (v3 §4.1.3 (11), eq. 8 (12))

def unified_confidence(intrinsic: torch.Tensor, drift: torch.Tensor, w_i: float, w_d: float,
                       calibration: tuple[float, float] | None = None) -> torch.Tensor:
    """v3 §4.1.3 (11): C_t = w_I·I_t + w_D·D̂_t, optionally calibrated as σ(a·C_t + b)."""
    c = w_i * intrinsic + w_d * drift
    if calibration is not None:
        c = torch.sigmoid(calibration[0] * c + calibration[1])
    return c


def rebound(c: torch.Tensor, c_min: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 8 (12): R_t = (C_t − C_min(t)) / (|C_min(t)| + ε), with C_min(t) = min_{τ≤t} C_τ."""
    return (c - c_min) / (c_min.abs() + eps)


# ---------------------------------------------------------------- the step's pure math


def logit_signals(source: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, alpha_h: float, alpha_m: float
                  ) -> tuple[torch.Tensor, ...]:
    """Everything one step reads from the logits: H̄, m and c_t of eq. 5 (5) on ``source`` (the sampled
    distribution), the self-certainty of ``source``, and K of eq. 7 (9). One pure function so that
    ``torch.compile`` fuses its passes over the vocabulary into few kernels."""
    h_norm, margin, lse = entropy_and_margin(source)
    c_tok = token_confidence(h_norm, margin, alpha_h, alpha_m)
    return h_norm, margin, c_tok, self_certainty(source.clamp_min(-1e4), lse), conditional_kl(cond, uncond)


def fused_state(first: torch.Tensor, s_tok: torch.Tensor, block: torch.Tensor, intrinsic: torch.Tensor,
                kl: torch.Tensor, kl_mean: torch.Tensor, kl_std: torch.Tensor, d_hat: torch.Tensor,
                c_min: torch.Tensor, cfg: ProfileConfig) -> tuple[torch.Tensor, ...]:
    """v3 §4.1.1 to eq. 8 (v1 8–12) after the rolling statistics: I, D, D̂, C, C_min and R, elementwise.
    ``first`` (a 0-d bool tensor) starts the EMAs and the running minimum."""
    i_raw = intrinsic_raw(s_tok, block, cfg.w_tok, cfg.w_blk)
    intrinsic = torch.where(first, i_raw, ema(intrinsic, i_raw, cfg.lambda_i))
    d = drift_score(rolling_zscore(kl, kl_mean, kl_std, cfg.eps))
    d_hat = torch.where(first, d, ema(d_hat, d, cfg.lambda_d))
    c = unified_confidence(intrinsic, d_hat, cfg.w_i, cfg.w_d, (cfg.calib_a, cfg.calib_b) if cfg.calibrate else None)
    c_min = torch.where(first, c, torch.minimum(c_min, c))
    return intrinsic, d, d_hat, c, c_min, rebound(c, c_min, cfg.eps)


# ---------------------------------------------------------------- state and one step

@dataclass
class ProfileState:
    """Per-trajectory profile state of a group, ``[N]`` rows indexed by trajectory (they never move)."""

    s_tok: torch.Tensor  # [n] eq. 5 (6)
    intrinsic: torch.Tensor  # [n] I, v3 §4.1.1 (8)
    d_hat: torch.Tensor  # [n] D̂, v3 §4.1.2 (10)
    c: torch.Tensor  # [n] C, v3 §4.1.3 (11)
    c_min: torch.Tensor  # [n] eq. 8 (12)
    r: torch.Tensor  # [n] eq. 8 (12)
    block_sum: torch.Tensor  # [n, K] accumulated H̄ per block
    tok_conf_sum: torch.Tensor  # [n] Σ c_t (Best-of-N / IS intrinsic score)
    self_cert_sum: torch.Tensor  # [n] Σ self-certainty
    worst_ring: torch.Tensor  # [..., L, n] rolling pool of Ē^worst, eq. 6 (7) (columns are trajectories)
    kl_ring: torch.Tensor  # [..., L, n] rolling pool of K, eq. 7 (9)

    @classmethod
    def empty(cls, shape: tuple[int, ...], num_blocks: int, window: int, device) -> "ProfileState":
        """The state of ``shape`` = (groups, trajectories) or (trajectories,) before the first step."""
        z = torch.zeros(shape, device=device)
        ring = torch.full((*shape[:-1], window, shape[-1]), float("nan"), device=device)
        return cls(z, z.clone(), z.clone(), z.clone(), z.clone(), z.clone(),
                   torch.zeros(*shape, num_blocks, device=device), z.clone(), z.clone(), ring, ring.clone())

    def copy_rows(self, dest: torch.Tensor, src: torch.Tensor) -> None:
        """Importance-sampling resample: trajectory ``dest[j]`` inherits ``src[j]``'s state and pools."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_ring"):
                value[:, dest] = value[:, src]
            else:
                value[dest] = value[src]  # advanced indexing reads src before writing

    def forget(self, ids: torch.Tensor) -> None:
        """Removed trajectories leave the rolling normalisations at once (pooled B and D use the live ones)."""
        ring_forget(self.worst_ring, ids)
        ring_forget(self.kl_ring, ids)



PROFILE_RECORDS = ("entropy_norm", "margin", "kl", "worst_block_entropy", "s_tok", "B", "I", "D", "D_hat", "C",
                   "C_min", "R")
"""What :func:`profile_step` records each step, in this order."""


def read_logits(cfg: ProfileConfig, cond: torch.Tensor, uncond: torch.Tensor, cfg_prev: torch.Tensor,
                temperature: float) -> tuple[torch.Tensor, ...]:
    """The step's token-level signals, one per row of the logits ``[..., V]``: eq. 5 (5)'s H̄, m and c_t of
    the sampled (guided) distribution at the previous scale (A1), its self-certainty, and eq. 7 (9)'s K."""
    if temperature != 1.0:
        cond, uncond = cond / temperature, uncond / temperature
    source = cond if cfg.entropy_source == "conditional" else guided_logits(cond, uncond, cfg_prev)
    return logit_signals(source, cond, uncond, cfg.alpha_h, cfg.alpha_m)


def profile_step(cfg: ProfileConfig, blocks: BlockSchedule, st: ProfileState, t: torch.Tensor, at: int | None,
                 signals: tuple[torch.Tensor, ...], live: torch.Tensor) -> tuple[ProfileState, list[torch.Tensor]]:
    """Eqs. 5–8 (v1 5–12) for one step of every trajectory (rows ``[G, N]``; ``live`` marks those still
    decoding, the others' values are computed and ignored) from :func:`read_logits`'s ``signals``. ``t`` is
    the step as a 0-d tensor; ``at`` the same on the host in eager mode, None in the compiled step. Returns
    the new state and the values of :data:`PROFILE_RECORDS`."""
    first = t == 0
    h_norm, margin, c_tok, self_cert, kl = signals
    s_tok = torch.where(first, c_tok, ema(st.s_tok, c_tok, cfg.lambda_tok))  # eq. 5 (6)
    # eq. 6 (7): this position's entropy joins its block, then the worst eligible blocks
    cell, count, eligible, k = blocks.at(t)
    block_sum = torch.where(cell, st.block_sum + h_norm[..., None], st.block_sum)
    worst = worst_block_entropy(block_sum, count, eligible, blocks.worst[at] if at is not None else k)
    slot = t % cfg.roll_window
    worst_ring = ring_push(st.worst_ring, slot, worst, live)  # NaN ("not yet defined") records nothing
    low, high = ring_min_max(worst_ring, slot, cfg.normalisation)
    block = torch.where(k > 0, block_stability(worst, low, high, cfg.eps), cfg.neutral_block_score)
    # v3 §4.1.1 to eq. 8 (v1 8–12), after the rolling statistics of eq. 7 (9)
    kl_ring = ring_push(st.kl_ring, slot, kl, live)
    mean, std = ring_mean_std(kl_ring, slot, cfg.normalisation)
    intrinsic, d, d_hat, c, c_min, r = fused_state(first, s_tok, block, st.intrinsic, kl, mean, std, st.d_hat,
                                                   st.c_min, cfg)
    new = ProfileState(s_tok, intrinsic, d_hat, c, c_min, r, block_sum, st.tok_conf_sum + c_tok,
                       st.self_cert_sum + self_cert, worst_ring, kl_ring)
    return new, [h_norm, margin, kl, worst, s_tok, block, intrinsic, d, d_hat, c, c_min, r]


def given_step(given: torch.Tensor, st: ProfileState, t: torch.Tensor) -> ProfileState:
    """C read from recorded or synthetic traces ``given`` ``[N, T]`` instead of the profile (the gate's
    replay); C_min and R follow eq. 8 (12)."""
    c = given.index_select(-1, t.view(1))[..., 0]
    c_min = torch.where(t == 0, c, torch.minimum(st.c_min, c))
    return replace(st, c=c, c_min=c_min, r=rebound(c, c_min, 1e-6))
