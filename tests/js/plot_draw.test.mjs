import test from "node:test";
import assert from "node:assert/strict";

import {
  THEME,
  THETA_DASH,
  colorForIndex,
  createSeries,
  drawPlot,
  mergeStepEvent,
  seriesFromSummary,
  segments,
} from "../../web/scalingar_plot.js";
import { FakeContext } from "./fake_context.mjs";
import { makeSummary, eventsFromSummary } from "./sample_data.mjs";

const W = 480;
const H = 260;
const close = (a, b, eps = 1e-6) => Math.abs(a - b) < eps;

function draw(series, w = W, h = H) {
  const ctx = new FakeContext(w, h);
  const out = drawPlot(ctx, series, { width: w, height: h });
  return { ctx, ...out };
}

const inRect = ([x, y], r) => x >= r.x - 0.01 && x <= r.x + r.w + 0.01 && y >= r.y - 0.01 && y <= r.y + r.h + 0.01;

// Strokes of one colour that lie in a panel (main: C, cfg: CFG).
function panelStrokes(ctx, color, rect) {
  return ctx
    .strokesWithColor(color)
    .filter((s) => s.subpaths.length && s.subpaths.every((sp) => sp.every((p) => inRect(p, rect))));
}

test("each trajectory's C is drawn in its own colour at the scaled points", () => {
  const summary = makeSummary({ steps: 64, n: 6 });
  const { ctx, layout, scales } = draw(seriesFromSummary(summary));
  for (const tr of summary.trajectories) {
    const strokes = panelStrokes(ctx, colorForIndex(tr.index), layout.main);
    assert.equal(strokes.length, 1, `trajectory ${tr.index}: expected one C line`);
    const pts = strokes[0].subpaths[0];
    const expected = tr.C.map((v, i) => [i, v]).filter(([, v]) => v !== null);
    assert.equal(pts.length, expected.length, `trajectory ${tr.index}: point count`);
    expected.forEach(([step, v], k) => {
      assert.ok(close(pts[k][0], scales.x(step)), `x of step ${step}`);
      assert.ok(close(pts[k][1], scales.c(v)), `y of step ${step}`);
    });
    assert.deepEqual(strokes[0].style.dash, [], "trajectory lines are solid");
  }
});

test("the CFG of each trajectory is drawn in the lower panel in the same colour", () => {
  const summary = makeSummary({ steps: 64, n: 4, basin: null, hardFail: null });
  const { ctx, layout, scales } = draw(seriesFromSummary(summary));
  for (const tr of summary.trajectories) {
    const strokes = panelStrokes(ctx, colorForIndex(tr.index), layout.cfg);
    assert.equal(strokes.length, 1);
    const pts = strokes[0].subpaths[0];
    assert.equal(pts.length, 64);
    assert.ok(close(pts[10][1], scales.cfg(tr.cfg[10])));
    assert.ok(close(pts[63][0], scales.x(63)));
  }
  // The two panels do not share a y scale: CFG ~7.5 would be far off the C panel.
  assert.ok(scales.c.domain[1] < 2 && scales.cfg.domain[0] > 5);
});

test("θ is one dashed line that starts after warm-up and follows the threshold", () => {
  const summary = makeSummary({ steps: 64, n: 3, warmup: 16, basin: null, hardFail: null });
  const { ctx, scales } = draw(seriesFromSummary(summary));
  const theta = ctx.strokes.filter((s) => s.style.strokeStyle === THEME.theta && s.style.dash.length > 0 && s.subpaths[0].length > 2);
  assert.equal(theta.length, 1);
  assert.deepEqual(theta[0].style.dash, [...THETA_DASH]);
  const pts = theta[0].subpaths[0];
  assert.equal(pts.length, 64 - 16);
  assert.ok(close(pts[0][0], scales.x(16)), "θ must start at the first step past warm-up");
  assert.ok(pts.every(([x]) => x >= scales.x(16) - 1e-9), "no θ points during warm-up");
  assert.ok(close(pts.at(-1)[1], scales.c(summary.threshold[63])));
  // The dash is reset afterwards: trajectory strokes drawn later are solid.
  const after = ctx.strokes.slice(ctx.strokes.indexOf(theta[0]) + 1);
  for (const s of after) if (s.style.strokeStyle.startsWith("hsl")) assert.deepEqual(s.style.dash, []);
});

test("a θ that is null everywhere (plain sampling) draws no threshold line", () => {
  const summary = makeSummary({ steps: 20, n: 2, warmup: 100, basin: null, hardFail: null });
  const { ctx } = draw(seriesFromSummary(summary));
  const dashed = ctx.strokes.filter((s) => s.style.dash.length > 0 && s.style.strokeStyle === THEME.theta && s.subpaths[0].length > 2);
  assert.equal(dashed.length, 0);
});

test("removal markers sit at the removal step and that step's C, styled by reason", () => {
  const summary = makeSummary({ steps: 64, n: 6, basin: { index: 2, step: 40 }, hardFail: { index: 4, step: 20 } });
  const { ctx, scales } = draw(seriesFromSummary(summary));
  // Basin: a ring in the basin colour.
  const rings = ctx.strokes.filter((s) => s.style.strokeStyle === THEME.basin && s.arcs.length === 1);
  const bx = scales.x(40);
  const by = scales.c(summary.trajectories[2].C[40]);
  const ring = rings.find((s) => close(s.arcs[0].x, bx) && close(s.arcs[0].y, by));
  assert.ok(ring, `no basin ring at (${bx}, ${by})`);
  // Hard fail: a cross (two strokes through the point) in the hard-fail colour.
  const hx = scales.x(20);
  const hy = scales.c(summary.trajectories[4].C[20]);
  const cross = ctx.strokes.find(
    (s) =>
      s.style.strokeStyle === THEME.hardFail &&
      s.subpaths.length === 2 &&
      s.subpaths.every((sp) => close((sp[0][0] + sp[1][0]) / 2, hx) && close((sp[0][1] + sp[1][1]) / 2, hy)),
  );
  assert.ok(cross, `no hard-fail cross at (${hx}, ${hy})`);
  // No markers for trajectories that were not removed (legend keys aside, all in the corner).
  const markerXs = ctx.strokes
    .filter((s) => [THEME.basin, THEME.hardFail].includes(s.style.strokeStyle))
    .map((s) => (s.arcs[0] ? s.arcs[0].x : (s.subpaths[0][0][0] + s.subpaths[0][1][0]) / 2));
  const inPlot = markerXs.filter((x) => close(x, bx) || close(x, hx));
  assert.equal(inPlot.length, 2);
});

test("a removal reported before any C of that trajectory arrived draws no marker", () => {
  let s = createSeries();
  s = mergeStepEvent(s, { step: 5, total: 10, num_trajectories: 2, ids: [0], C: [0.5], cfg: [7], theta: null, removed: [{ index: 1, step: 4, reason: "basin" }] });
  const { ctx } = draw(s);
  assert.equal(ctx.strokes.filter((st) => st.style.strokeStyle === THEME.basin && st.arcs.length && st.arcs[0].r > 3).length, 0);
});

test("the selected trajectory is drawn last, thicker and with a halo; the others are dimmed", () => {
  const summary = makeSummary({ steps: 64, n: 5, selected: 3, basin: null, hardFail: null });
  const { ctx, layout } = draw(seriesFromSummary(summary));
  const sel = panelStrokes(ctx, colorForIndex(3), layout.main)[0];
  const others = [0, 1, 2, 4].map((i) => panelStrokes(ctx, colorForIndex(i), layout.main)[0]);
  for (const o of others) {
    assert.ok(sel.style.lineWidth > o.style.lineWidth);
    assert.ok(o.style.globalAlpha < 1);
    assert.ok(ctx.strokes.indexOf(o) < ctx.strokes.indexOf(sel), "selected must be drawn on top");
  }
  assert.equal(sel.style.globalAlpha, 1);
  const halo = ctx.strokes.find((s) => s.style.strokeStyle === THEME.halo);
  assert.ok(halo, "selected trajectory needs a halo");
  assert.deepEqual(halo.subpaths[0], sel.subpaths[0]);
  assert.ok(halo.style.lineWidth > sel.style.lineWidth);
  assert.ok(ctx.texts.some((t) => t.text.includes("chosen #3")));
});

test("without a selection (live) no trajectory is highlighted or dimmed", () => {
  const summary = makeSummary({ steps: 30, n: 3, basin: null, hardFail: null });
  let s = createSeries();
  for (const e of eventsFromSummary(summary, { every: 3 })) s = mergeStepEvent(s, e);
  const { ctx, layout } = draw(s);
  assert.equal(ctx.strokes.filter((st) => st.style.strokeStyle === THEME.halo).length, 0);
  const widths = [0, 1, 2].map((i) => panelStrokes(ctx, colorForIndex(i), layout.main)[0].style.lineWidth);
  assert.equal(new Set(widths).size, 1);
  assert.ok(ctx.texts.some((t) => t.text === "step 30/30"));
});

test("live partial data: a half-run series draws up to the last step received", () => {
  const summary = makeSummary({ steps: 64, n: 4, basin: null, hardFail: null });
  let s = createSeries();
  for (const e of eventsFromSummary(summary, { every: 4 }).slice(0, 8)) s = mergeStepEvent(s, e); // steps 0..28
  const { ctx, layout, scales } = draw(s);
  // The x axis spans the whole run so the curve grows left to right.
  assert.deepEqual(scales.x.domain, [0, 63]);
  const pts = panelStrokes(ctx, colorForIndex(0), layout.main)[0].subpaths[0];
  assert.equal(pts.length, 8);
  assert.ok(close(pts.at(-1)[0], scales.x(28)));
  assert.ok(ctx.texts.some((t) => t.text === "step 29/64"));
});

test("a single event draws a visible tick per trajectory, not nothing", () => {
  const s = mergeStepEvent(createSeries(), { step: 0, total: 100, num_trajectories: 2, ids: [0, 1], C: [0.4, 0.5], cfg: [7.5, 7.5], theta: null, removed: [] });
  const { ctx, layout } = draw(s);
  for (const i of [0, 1]) {
    const st = panelStrokes(ctx, colorForIndex(i), layout.main);
    assert.equal(st.length, 1);
    const [a, b] = st[0].subpaths[0];
    assert.ok(a[0] !== b[0] || a[1] !== b[1], "zero-length tick would be invisible");
  }
});

test("an empty series draws frames and a waiting message but no data lines", () => {
  for (const s of [createSeries(), null, seriesFromSummary({})]) {
    const { ctx } = draw(s);
    assert.equal(ctx.strokes.filter((st) => String(st.style.strokeStyle).startsWith("hsl")).length, 0);
    assert.ok(ctx.texts.some((t) => /waiting/.test(t.text)));
    assert.ok(ctx.rects.some((r) => r.kind === "fill" && r.w === W && r.h === H && r.style.fillStyle === THEME.background));
  }
});

test("everything drawn stays finite and inside the canvas, and state is restored", () => {
  const summaries = [
    makeSummary({ steps: 64, n: 8 }),
    makeSummary({ steps: 2, n: 1, warmup: 0, basin: null, hardFail: null, selected: 0 }),
    // Constant values everywhere (flat C, flat CFG, flat θ).
    {
      steps: 5,
      num_trajectories: 1,
      selected: 0,
      strategy: "plain",
      threshold: [0.3, 0.3, 0.3, 0.3, 0.3],
      trajectories: [{ index: 0, selected: true, removed_at: null, C: [0.3, 0.3, 0.3, 0.3, 0.3], cfg: [7.5, 7.5, 7.5, 7.5, 7.5] }],
    },
  ];
  for (const summary of summaries) {
    for (const [w, h] of [
      [W, H],
      [220, 140],
    ]) {
      const { ctx } = draw(seriesFromSummary(summary), w, h); // FakeContext throws on NaN/Infinity
      for (const st of ctx.strokes) {
        for (const sp of st.subpaths) for (const [x, y] of sp) assert.ok(x >= 0 && x <= w && y >= 0 && y <= h, `(${x},${y}) off canvas`);
      }
      const saves = ctx.calls.filter((c) => c.name === "save").length;
      const restores = ctx.calls.filter((c) => c.name === "restore").length;
      assert.equal(saves, restores);
      assert.deepEqual(ctx.getLineDash(), []);
      assert.equal(ctx.globalAlpha, 1);
    }
  }
});

test("drawPlot falls back to the canvas size when no width/height is given", () => {
  const ctx = new FakeContext(300, 180);
  const { layout } = drawPlot(ctx, seriesFromSummary(makeSummary({ steps: 10, n: 2 })));
  assert.equal(layout.width, 300);
  assert.equal(layout.height, 180);
  assert.ok(segments(seriesFromSummary(makeSummary({ steps: 10, n: 2 })).trajectories[0].C).length === 1);
});

test("renderCanvas sizes the bitmap for the pixel ratio and draws in CSS pixels", async () => {
  const { renderCanvas } = await import("../../web/scalingar_plot.js");
  const ctx = new FakeContext(0, 0);
  const transforms = [];
  ctx.setTransform = (...m) => transforms.push(m);
  let widthWrites = 0;
  let w = 0;
  const canvas = {
    clientWidth: 400,
    clientHeight: 220,
    get width() {
      return w;
    },
    set width(v) {
      widthWrites += 1;
      w = v;
    },
    height: 0,
    getContext: (kind) => (kind === "2d" ? ctx : null),
  };
  const s = seriesFromSummary(makeSummary({ steps: 20, n: 2 }));
  const out = renderCanvas(canvas, s, { pixelRatio: 2 });
  assert.equal(canvas.width, 800);
  assert.equal(canvas.height, 440);
  assert.deepEqual(transforms.at(-1), [2, 0, 0, 2, 0, 0]);
  assert.equal(out.layout.width, 400, "layout is in CSS pixels");
  // Same size again: the bitmap is not reassigned (that would clear it and flicker).
  renderCanvas(canvas, s, { pixelRatio: 2 });
  assert.equal(widthWrites, 1);
  // A collapsed node (no size) draws nothing and does not throw.
  assert.equal(renderCanvas({ clientWidth: 0, clientHeight: 0, getContext: () => ctx }, s), null);
});

test("the legend names only the marks that occur", () => {
  const legendTexts = (summary) => {
    const { ctx, layout } = draw(seriesFromSummary(summary));
    return ctx.texts.filter((t) => t.y < layout.main.y && ["θ", "basin", "hard fail"].includes(t.text)).map((t) => t.text);
  };
  assert.deepEqual(legendTexts(makeSummary({ steps: 64, n: 5, selected: 0, basin: null, hardFail: null })), ["θ"]);
  assert.deepEqual(legendTexts(makeSummary({ steps: 64, n: 5, selected: 0, basin: { index: 1, step: 30 }, hardFail: null })),
    ["θ", "basin"]);
  const both = makeSummary({ steps: 64, n: 5, selected: 0, basin: { index: 1, step: 30 }, hardFail: { index: 2, step: 20 } });
  assert.deepEqual(legendTexts(both), ["θ", "basin", "hard fail"]);
});
