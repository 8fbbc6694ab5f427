// Deterministic sample data in the engine's formats (Trace.summary() and the
// live `scalingar.step` payload), shared by the unit tests and the static demo
// page in tests/browser/.

// Small deterministic PRNG (mulberry32) so every run sees the same curves.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// A summary with N trajectories over T steps: θ undefined during warm-up,
// one basin removal, one hard-fail removal, one selected survivor.
// Removed trajectories' arrays stop at the removal step for `basin` and are
// null-padded to T for `hard_fail`, to cover both shapes a trace may use.
export function makeSummary({
  steps = 64,
  n = 6,
  warmup = 8,
  basin = { index: 2, step: 40 },
  hardFail = { index: 4, step: 20 },
  selected = 1,
  seed = 7,
} = {}) {
  const rand = rng(seed);
  const trajectories = [];
  const threshold = [];
  for (let i = 0; i < n; i++) {
    const base = 0.36 + 0.04 * i * (i === selected ? 0 : 0.5) + (i === selected ? 0.1 : 0);
    const phase = rand() * Math.PI * 2;
    const C = [];
    const cfg = [];
    let removedAt = null;
    let reason = null;
    if (basin && i === basin.index) [removedAt, reason] = [basin.step, "basin"];
    if (hardFail && i === hardFail.index) [removedAt, reason] = [hardFail.step, "hard_fail"];
    for (let t = 0; t < steps; t++) {
      if (removedAt !== null && t > removedAt) {
        if (reason === "hard_fail") {
          C.push(null);
          cfg.push(null);
        }
        continue;
      }
      let c = base + 0.05 * Math.sin(t / 6 + phase) + 0.01 * (rand() - 0.5);
      if (reason === "basin" && t > removedAt - 12) c -= 0.1;
      if (reason === "hard_fail" && t === removedAt) c = 0.05;
      C.push(Number(c.toFixed(5)));
      cfg.push(Number((7.5 + 0.3 * Math.sin(t / 9 + phase)).toFixed(4)));
    }
    trajectories.push({
      index: i,
      removed_at: removedAt,
      removed_reason: reason,
      selected: i === selected,
      C,
      cfg,
    });
  }
  // θ as the engine computes it: p=0.2 quantile of the alive C, then an EMA (λ=0.2).
  let theta = null;
  for (let t = 0; t < steps; t++) {
    if (t < warmup) {
      threshold.push(null);
      continue;
    }
    const alive = trajectories.map((tr) => tr.C[t]).filter((v) => typeof v === "number").sort((a, b) => a - b);
    const q = alive.length ? alive[Math.floor(0.2 * (alive.length - 1))] : theta ?? 0;
    theta = theta === null ? q : 0.8 * theta + 0.2 * q;
    threshold.push(Number(theta.toFixed(5)));
  }
  return { steps, num_trajectories: n, strategy: "scalingar", selected, threshold, trajectories };
}

// Replay a summary as the live events the node would send (every `every` steps
// plus the last), each carrying the cumulative removal list.
export function eventsFromSummary(summary, { every = 1, node = "7" } = {}) {
  const events = [];
  const T = summary.steps;
  for (let t = 0; t < T; t++) {
    if (t % every !== 0 && t !== T - 1) continue;
    const alive = summary.trajectories.filter((tr) => tr.removed_at === null || tr.removed_at >= t);
    const removed = summary.trajectories
      .filter((tr) => tr.removed_at !== null && tr.removed_at <= t)
      .map((tr) => ({ index: tr.index, step: tr.removed_at, reason: tr.removed_reason }));
    events.push({
      node,
      step: t,
      total: T,
      num_trajectories: summary.num_trajectories,
      ids: alive.map((tr) => tr.index),
      C: alive.map((tr) => tr.C[t]),
      cfg: alive.map((tr) => tr.cfg[t]),
      theta: summary.threshold[t],
      removed,
    });
  }
  return events;
}
