import test from "node:test";
import assert from "node:assert/strict";

import {
  createSeries,
  mergeStepEvent,
  seriesFromSummary,
  compactSummary,
  segments,
} from "../../web/scalingar_plot.js";
import { makeSummary, eventsFromSummary } from "./sample_data.mjs";

const ev = (over = {}) => ({
  node: "7",
  step: 0,
  total: 16,
  num_trajectories: 3,
  ids: [0, 1, 2],
  C: [0.5, 0.4, 0.3],
  cfg: [7.5, 7.5, 7.5],
  theta: null,
  removed: [],
  ...over,
});

test("first event creates every trajectory with one point at its step", () => {
  const s = mergeStepEvent(createSeries(), ev({ step: 3 }));
  assert.equal(s.total, 16);
  assert.equal(s.numTrajectories, 3);
  assert.equal(s.lastStep, 3);
  assert.deepEqual(
    s.trajectories.map((t) => t.index),
    [0, 1, 2],
  );
  assert.deepEqual(s.trajectories[1].C, [[3, 0.4]]);
  assert.deepEqual(s.trajectories[2].cfg, [[3, 7.5]]);
  assert.equal(s.final, false);
  assert.equal(s.selected, null);
});

test("events accumulate in step order and map values through ids", () => {
  let s = createSeries();
  s = mergeStepEvent(s, ev({ step: 0 }));
  s = mergeStepEvent(s, ev({ step: 4, C: [0.51, 0.41, 0.31] }));
  // Trajectory 1 removed: the remaining columns belong to 0 and 2.
  s = mergeStepEvent(
    s,
    ev({ step: 8, ids: [0, 2], C: [0.52, 0.32], cfg: [7.6, 7.4], removed: [{ index: 1, step: 6, reason: "basin" }] }),
  );
  const [t0, t1, t2] = s.trajectories;
  assert.deepEqual(t0.C, [
    [0, 0.5],
    [4, 0.51],
    [8, 0.52],
  ]);
  assert.deepEqual(t1.C, [
    [0, 0.4],
    [4, 0.41],
  ]);
  assert.deepEqual(t2.C.at(-1), [8, 0.32]);
  assert.deepEqual(t2.cfg.at(-1), [8, 7.4]);
  assert.equal(t1.removedAt, 6);
  assert.equal(t1.removedReason, "basin");
  assert.equal(t0.removedAt, null);
  assert.equal(s.lastStep, 8);
});

test("a cumulative removal list keeps the first report of each removal", () => {
  let s = mergeStepEvent(createSeries(), ev({ step: 5, removed: [{ index: 2, step: 5, reason: "hard_fail" }] }));
  s = mergeStepEvent(
    s,
    ev({
      step: 6,
      ids: [0, 1],
      C: [0.5, 0.4],
      cfg: [7.5, 7.5],
      removed: [
        { index: 2, step: 6, reason: "basin" }, // a repeat must not move the marker
        { index: 0, step: 6, reason: "basin" },
      ],
    }),
  );
  assert.equal(s.trajectories[2].removedAt, 5);
  assert.equal(s.trajectories[2].removedReason, "hard_fail");
  assert.equal(s.trajectories[0].removedAt, 6);
});

test("θ stays null before warm-up and its line starts at the first defined step", () => {
  let s = createSeries();
  for (let t = 0; t < 6; t++) s = mergeStepEvent(s, ev({ step: t, theta: t < 4 ? null : [0, 0, 0, 0, 0.34, 0.35][t] }));
  assert.equal(s.theta.length, 6);
  assert.deepEqual(
    s.theta.slice(0, 4).map((p) => p[1]),
    [null, null, null, null],
  );
  assert.deepEqual(segments(s.theta), [
    [
      [4, 0.34],
      [5, 0.35],
    ],
  ]);
});

test("a repeated step replaces its values instead of duplicating the point", () => {
  let s = mergeStepEvent(createSeries(), ev({ step: 2 }));
  s = mergeStepEvent(s, ev({ step: 2, C: [0.6, 0.4, 0.3], theta: 0.2 }));
  assert.deepEqual(s.trajectories[0].C, [[2, 0.6]]);
  assert.deepEqual(s.theta, [[2, 0.2]]);
});

test("a new run (step goes back, other T or N, or after a final summary) starts a fresh series", () => {
  let s = mergeStepEvent(createSeries(), ev({ step: 10 }));
  const again = mergeStepEvent(s, ev({ step: 0, C: [0.9, 0.9, 0.9] }));
  assert.notEqual(again, s);
  assert.deepEqual(again.trajectories[0].C, [[0, 0.9]]);

  s = mergeStepEvent(createSeries(), ev({ step: 1 }));
  const otherT = mergeStepEvent(s, ev({ step: 2, total: 32 }));
  assert.equal(otherT.total, 32);
  assert.equal(otherT.trajectories[0].C.length, 1);

  s = mergeStepEvent(createSeries(), ev({ step: 1 }));
  const otherN = mergeStepEvent(s, ev({ step: 2, num_trajectories: 2, ids: [0, 1], C: [0.1, 0.2], cfg: [1, 1] }));
  assert.equal(otherN.trajectories.length, 2);
  assert.equal(otherN.trajectories[0].C.length, 1);

  const fin = seriesFromSummary(makeSummary({ steps: 16, n: 3 }));
  const live = mergeStepEvent(fin, ev({ step: 12 }));
  assert.equal(live.final, false);
  assert.equal(live.selected, null);
  assert.deepEqual(live.trajectories[0].C, [[12, 0.5]]);
});

test("malformed events are ignored without throwing", () => {
  const s = mergeStepEvent(createSeries(), ev({ step: 1 }));
  const before = JSON.stringify(s);
  for (const bad of [null, undefined, {}, { step: "x", total: 3 }, { step: 1 }, { total: 3 }]) {
    assert.equal(mergeStepEvent(s, bad), s);
  }
  assert.equal(JSON.stringify(s), before);
  // Partly bad: non-finite values are skipped, good ones kept.
  const t = mergeStepEvent(s, ev({ step: 2, C: [NaN, 0.4, null], cfg: ["a", 7, 7], removed: [null, { index: "z" }] }));
  assert.deepEqual(t.trajectories[0].C, [[1, 0.5]]);
  assert.deepEqual(t.trajectories[1].C.at(-1), [2, 0.4]);
  assert.deepEqual(t.trajectories[0].cfg, [[1, 7.5]]);
  // Works from no series at all.
  assert.equal(mergeStepEvent(undefined, ev()).trajectories.length, 3);
});

test("replaying every live event reproduces the final summary's curves", () => {
  const summary = makeSummary({ steps: 40, n: 5, basin: { index: 3, step: 25 }, hardFail: { index: 0, step: 15 } });
  let live = createSeries();
  for (const e of eventsFromSummary(summary)) live = mergeStepEvent(live, e);
  const fin = seriesFromSummary(summary);
  for (let i = 0; i < 5; i++) {
    const a = segments(live.trajectories[i].C);
    const b = segments(fin.trajectories[i].C);
    assert.deepEqual(a, b, `trajectory ${i}`);
    assert.equal(live.trajectories[i].removedAt, fin.trajectories[i].removedAt);
    assert.equal(live.trajectories[i].removedReason, fin.trajectories[i].removedReason);
  }
  assert.deepEqual(segments(live.theta), segments(fin.theta));
  assert.equal(live.lastStep, fin.lastStep);
});

test("throttled events (every 5th step) keep sparse points at the right steps", () => {
  const summary = makeSummary({ steps: 23, n: 2, basin: null, hardFail: null, selected: 0 });
  let s = createSeries();
  for (const e of eventsFromSummary(summary, { every: 5 })) s = mergeStepEvent(s, e);
  assert.deepEqual(
    s.trajectories[0].C.map((p) => p[0]),
    [0, 5, 10, 15, 20, 22],
  );
  assert.equal(s.trajectories[1].C[2][1], summary.trajectories[1].C[10]);
});

test("seriesFromSummary reads selection, removals, θ and total", () => {
  const summary = makeSummary({ steps: 64, n: 6, selected: 1 });
  const s = seriesFromSummary(summary);
  assert.equal(s.final, true);
  assert.equal(s.total, 64);
  assert.equal(s.lastStep, 63);
  assert.equal(s.selected, 1);
  assert.equal(s.strategy, "scalingar");
  assert.deepEqual(
    s.trajectories.filter((t) => t.selected).map((t) => t.index),
    [1],
  );
  assert.equal(s.trajectories[2].removedAt, 40);
  assert.equal(s.trajectories[2].removedReason, "basin");
  assert.equal(s.trajectories[4].removedAt, 20);
  assert.equal(s.trajectories[4].removedReason, "hard_fail");
  // Basin trajectory's arrays end at the removal step; hard-fail's are null-padded.
  assert.equal(s.trajectories[2].C.length, 41);
  assert.deepEqual(segments(s.trajectories[4].C).flat().at(-1)[0], 20);
  assert.equal(segments(s.theta)[0][0][0], 8);
});

test("seriesFromSummary copes with empty, partial and odd summaries", () => {
  for (const bad of [null, undefined, 5, "x", {}]) {
    const s = seriesFromSummary(bad);
    assert.equal(s.trajectories.length, 0);
  }
  // Summary with no threshold (e.g. best_of_n) and no `steps`.
  const s = seriesFromSummary({
    num_trajectories: 2,
    strategy: "best_of_n",
    selected: null,
    trajectories: [
      { index: 0, removed_at: null, removed_reason: null, selected: false, C: [0.1, 0.2, 0.3], cfg: [2, 2, 2] },
      { index: 1, removed_at: null, removed_reason: null, selected: true, C: [0.2, null], cfg: [2, 2] },
    ],
  });
  assert.equal(s.total, 3);
  assert.equal(s.selected, 1);
  assert.deepEqual(s.theta, []);
  // A trajectory listed in num_trajectories but missing from the list still exists (empty).
  const gap = seriesFromSummary({ steps: 4, num_trajectories: 3, trajectories: [{ index: 2, C: [0.1], cfg: [] }] });
  assert.deepEqual(
    gap.trajectories.map((t) => [t.index, t.C.length]),
    [
      [0, 0],
      [1, 0],
      [2, 1],
    ],
  );
});

test("compactSummary bounds the size but keeps removals, θ start, the last step and values", () => {
  const summary = makeSummary({ steps: 1024, n: 8, warmup: 128, basin: { index: 2, step: 301 }, hardFail: { index: 5, step: 777 } });
  const small = compactSummary(summary, 128);
  assert.ok(small.at.length <= 128 + 4, `kept ${small.at.length} steps`);
  for (const must of [0, 128, 301, 777, 1023]) assert.ok(small.at.includes(must), `step ${must} dropped`);
  assert.ok(JSON.stringify(small).length < JSON.stringify(summary).length / 4);
  const s = seriesFromSummary(small);
  const full = seriesFromSummary(summary);
  assert.equal(s.total, 1024);
  assert.equal(s.lastStep, 1023);
  assert.equal(s.trajectories[2].removedAt, 301);
  assert.equal(s.trajectories[5].removedReason, "hard_fail");
  assert.equal(s.selected, summary.selected);
  // Every kept point equals the original value at that step (to 4 decimals).
  for (const [step, v] of segments(s.trajectories[2].C).flat()) {
    assert.ok(Math.abs(v - summary.trajectories[2].C[step]) < 1e-4);
  }
  // The removal step's C is kept, so the marker lands where the full trace puts it.
  const last = (pts) => segments(pts).flat().at(-1);
  assert.deepEqual(last(s.trajectories[2].C)[0], last(full.trajectories[2].C)[0]);
  assert.equal(segments(s.theta)[0][0][0], 128);
  // Short traces are kept whole.
  const tiny = makeSummary({ steps: 10, n: 2, warmup: 2, basin: null, hardFail: null, selected: 0 });
  assert.equal(compactSummary(tiny, 256).at.length, 10);
  assert.equal(compactSummary(null), null);
});
