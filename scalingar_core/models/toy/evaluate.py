"""Quick plain-sampling evaluation of a toy net (used by ``scripts/train_toy.py`` for the model card).

Independent of the ScalingAR engine on purpose: it measures the *base model* (first-sample accuracy,
mean over samples, oracle best-of-n, random pick, most-confident pick) with plain CFG sampling, batching
many prompts into one decoding session.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..gpt_session import GPTSession
from . import checker, tokenizer
from .text import tokenize


@torch.no_grad()
def sample(net, prompts: list[str], n: int, cfg_scale: float = 1.0, temperature: float = 1.0,
           seed: int = 0, batch_rows: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain CFG sampling. Returns codes ``[P, n, T]`` and per-trajectory mean token confidence
    ``[P, n]`` (1 − (0.5·normalised entropy + 0.5·(1 − top-2 margin)) of the guided distribution)."""
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    feats = net.caption_features(tokenize(prompts))
    rows = feats.repeat_interleave(n, dim=0)
    T = net.gpt.config.block_size
    V = net.gpt.config.vocab_size
    all_codes, all_conf = [], []
    for start in range(0, rows.shape[0], batch_rows):
        chunk = rows[start:start + batch_rows]
        m = chunk.shape[0]
        session = GPTSession(net.gpt, chunk, m)
        logits = session.prefill()
        codes = torch.empty(m, T, dtype=torch.long)
        conf = torch.zeros(m)
        for t in range(T):
            cond, unc = logits[:m], logits[m:]
            guided = (unc + cfg_scale * (cond - unc)) / temperature
            p = guided.softmax(-1)
            ent = -(p * p.clamp_min(1e-12).log()).sum(-1) / np.log(V)
            top2 = p.topk(2, dim=-1).values
            conf += 1 - (0.5 * ent + 0.5 * (1 - (top2[:, 0] - top2[:, 1])))
            tok = torch.multinomial(p, 1, generator=gen)[:, 0]
            codes[:, t] = tok
            if t + 1 < T:
                logits = session.step(tok)
        all_codes.append(codes)
        all_conf.append(conf / T)
    return torch.cat(all_codes).view(len(prompts), n, T), torch.cat(all_conf).view(len(prompts), n)


def score(entries: list[dict], codes: torch.Tensor, conf: torch.Tensor | None = None) -> dict:
    """Checker outcomes → accuracy summary (overall, per category, per tier; selection rules)."""
    P, n, _ = codes.shape
    flat = tokenizer.decode(codes.reshape(P * n, -1))
    images = flat.reshape(P, n, *flat.shape[1:])
    ok = np.array([[checker.check(images[i, j], entries[i]["spec"]).passed for j in range(n)] for i in range(P)])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        groups[e["category"]].append(i)
        groups["tier:" + e.get("tier", "seen")].append(i)
    out = {"first_sample": float(ok[:, 0].mean()), "mean_of_n": float(ok.mean()),
           "oracle_best_of_n": float(ok.any(1).mean()), "n": n, "prompts": P,
           "per_group_first_sample": {g: float(ok[idx, 0].mean()) for g, idx in sorted(groups.items())},
           "per_group_mean_of_n": {g: float(ok[idx].mean()) for g, idx in sorted(groups.items())},
           "per_group_oracle": {g: float(ok[idx].any(1).mean()) for g, idx in sorted(groups.items())}}
    if conf is not None:
        pick = conf.argmax(1).numpy()
        out["most_confident_pick"] = float(ok[np.arange(P), pick].mean())
        out["within_prompt_auroc_mean_conf"] = within_prompt_auroc(conf.numpy(), ok)
    return out


def within_prompt_auroc(score_: np.ndarray, ok: np.ndarray) -> float | None:
    """AUROC of ``score_`` for correctness, per prompt with mixed outcomes, averaged (ties count half)."""
    vals = []
    for s, y in zip(score_, ok):
        pos, neg = s[y], s[~y]
        if len(pos) and len(neg):
            vals.append(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                        / (len(pos) * len(neg)))
    return float(np.mean(vals)) if vals else None
