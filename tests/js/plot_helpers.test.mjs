import test from "node:test";
import assert from "node:assert/strict";

import {
  colorForIndex,
  linearScale,
  niceTicks,
  paddedExtent,
  segments,
  valueAtOrBefore,
  computeLayout,
  computeScales,
  seriesFromSummary,
  createSeries,
} from "../../web/scalingar_plot.js";
import { makeSummary } from "./sample_data.mjs";

test("importing the module touches no DOM globals", () => {
  // Node has no window/document; the import above would have thrown if it used them.
  assert.equal(typeof globalThis.document, "undefined");
  assert.equal(typeof globalThis.window, "undefined");
});

test("colorForIndex is stable and distinct for the first 16 trajectories", () => {
  const colors = Array.from({ length: 16 }, (_, i) => colorForIndex(i));
  assert.equal(new Set(colors).size, 16);
  assert.equal(colorForIndex(3), colorForIndex(3));
  for (const c of colors) assert.match(c, /^hsl\(\d+, \d+%, \d+%\)$/);
  // Neighbouring indices must not get near-identical hues.
  const hue = (c) => Number(c.match(/^hsl\((\d+)/)[1]);
  for (let i = 0; i < 15; i++) {
    const d = Math.abs(hue(colors[i]) - hue(colors[i + 1]));
    assert.ok(Math.min(d, 360 - d) > 60, `hues of ${i} and ${i + 1} too close`);
  }
  // Bad input falls back instead of producing "NaN" colours.
  assert.equal(colorForIndex(-1), colorForIndex(0));
  assert.equal(colorForIndex("x"), colorForIndex(0));
});

test("linearScale maps, inverts and survives a zero-width domain", () => {
  const y = linearScale([0, 1], [100, 20]); // inverted: pixel y grows downwards
  assert.equal(y(0), 100);
  assert.equal(y(1), 20);
  assert.equal(y(0.25), 80);
  assert.equal(y.invert(80), 0.25);
  const flat = linearScale([3, 3], [0, 50]);
  assert.equal(flat(3), 25);
  assert.ok(Number.isFinite(flat(7)));
});

test("niceTicks are evenly spaced nice numbers inside the range", () => {
  for (const [lo, hi] of [
    [0, 1],
    [0.31, 0.58],
    [5.5, 9.5],
    [0, 1023],
    [-2, 3],
  ]) {
    const ticks = niceTicks(lo, hi, 4);
    assert.ok(ticks.length >= 2 && ticks.length <= 9, `${lo}..${hi}: ${ticks}`);
    for (const t of ticks) assert.ok(t >= lo - 1e-9 && t <= hi + 1e-9, `${t} outside ${lo}..${hi}`);
    const step = ticks[1] - ticks[0];
    for (let i = 2; i < ticks.length; i++) assert.ok(Math.abs(ticks[i] - ticks[i - 1] - step) < 1e-9);
    const mant = step / 10 ** Math.floor(Math.log10(step));
    assert.ok([1, 2, 2.5, 5].some((m) => Math.abs(mant - m) < 1e-9), `step ${step} not nice`);
  }
  assert.deepEqual(niceTicks(2, 2), [2]);
  assert.deepEqual(niceTicks(null, 1), []);
  assert.deepEqual(niceTicks(1, 0, 1), [0, 1]);
});

test("paddedExtent ignores missing values and widens flat data", () => {
  assert.deepEqual(paddedExtent([]), [0, 1]);
  assert.deepEqual(paddedExtent([null, NaN, undefined]), [0, 1]);
  const [lo, hi] = paddedExtent([0.4, null, 0.6, NaN]);
  assert.ok(lo < 0.4 && lo > 0.35 && hi > 0.6 && hi < 0.65);
  const [flo, fhi] = paddedExtent([7.5, 7.5], { minSpan: 0.5 });
  assert.ok(fhi - flo >= 0.5 && flo < 7.5 && fhi > 7.5);
});

test("segments split lines where values are missing", () => {
  const pts = [
    [0, null],
    [1, null],
    [2, 0.3],
    [3, 0.4],
    [4, null],
    [5, 0.5],
  ];
  assert.deepEqual(segments(pts), [
    [
      [2, 0.3],
      [3, 0.4],
    ],
    [[5, 0.5]],
  ]);
  assert.deepEqual(segments([]), []);
  assert.deepEqual(segments([[0, NaN]]), []);
});

test("valueAtOrBefore finds the last defined sample not after a step", () => {
  const pts = [
    [0, 0.1],
    [5, 0.2],
    [9, null],
    [12, 0.4],
  ];
  assert.equal(valueAtOrBefore(pts, 5), 0.2);
  assert.equal(valueAtOrBefore(pts, 10), 0.2);
  assert.equal(valueAtOrBefore(pts, 100), 0.4);
  assert.equal(valueAtOrBefore(pts, -1), null);
  assert.equal(valueAtOrBefore([], 3), null);
});

test("layout keeps the CFG panel below the main panel inside the canvas", () => {
  for (const [w, h] of [
    [400, 240],
    [260, 150],
    [1200, 600],
  ]) {
    const L = computeLayout(w, h);
    assert.ok(L.main.y + L.main.h < L.cfg.y, "panels overlap");
    assert.ok(L.cfg.y + L.cfg.h <= h);
    assert.ok(L.main.x + L.main.w <= w);
    assert.ok(L.cfg.h < L.main.h, "CFG panel should be the small one");
    assert.equal(L.main.x, L.cfg.x);
    assert.equal(L.main.w, L.cfg.w);
  }
  // Degenerate sizes still give positive panel sizes.
  const tiny = computeLayout(10, 10);
  assert.ok(tiny.main.w > 0 && tiny.main.h > 0 && tiny.cfg.h > 0);
});

test("scales cover every step and every value of the data", () => {
  const summary = makeSummary({ steps: 50 });
  const s = seriesFromSummary(summary);
  const L = computeLayout(400, 240);
  const sc = computeScales(s, L);
  assert.deepEqual(sc.x.domain, [0, 49]);
  assert.equal(sc.x(0), L.main.x);
  assert.equal(sc.x(49), L.main.x + L.main.w);
  const cs = summary.trajectories.flatMap((t) => t.C).filter((v) => v !== null);
  const th = summary.threshold.filter((v) => v !== null);
  const all = [...cs, ...th];
  for (const v of all) {
    const py = sc.c(v);
    assert.ok(py > L.main.y && py < L.main.y + L.main.h, `C=${v} drawn outside the main panel`);
  }
  for (const v of summary.trajectories.flatMap((t) => t.cfg).filter((v) => v !== null)) {
    const py = sc.cfg(v);
    assert.ok(py > L.cfg.y && py < L.cfg.y + L.cfg.h, `cfg=${v} drawn outside the CFG panel`);
  }
  // C domain follows the data, not a fixed [0, 1].
  assert.ok(sc.c.domain[0] > Math.min(...all) - 0.1 && sc.c.domain[0] <= Math.min(...all));
  // Empty series: a usable default domain.
  const empty = computeScales(createSeries(), L);
  assert.deepEqual(empty.x.domain, [0, 1]);
  assert.deepEqual(empty.c.domain, [0, 1]);
});
