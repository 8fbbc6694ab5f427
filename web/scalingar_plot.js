// Pure drawing logic for the ScalingAR confidence plot.
//
// No DOM globals are touched at import time or anywhere else: every drawing
// function takes a 2D-context-like object (the real CanvasRenderingContext2D in
// the browser, a recording fake in tests/js/). ComfyUI loads every .js file under
// web/ as an extension, so importing this file on its own must be harmless.
//
// Data model ("series"), built from live `scalingar.step` events or from the
// final trace summary:
//   {
//     total,             // T, number of decoding steps
//     numTrajectories,   // N
//     strategy,          // string or null (known only from the summary)
//     selected,          // original index of the selected trajectory, or null
//     final,             // true when built from the final summary
//     lastStep,          // highest step seen, -1 when empty
//     theta: [[step, value|null], ...],           // null = not defined yet (warm-up)
//     trajectories: [{ index, C: [[step, v]], cfg: [[step, v]],
//                      removedAt, removedReason, selected }]   // sorted by index
//   }
// The x value of every point is the decoding step exactly as the engine reports
// it; summaries are indexed by position in their per-step arrays.

export const THEME = Object.freeze({
  background: "#1b1d22",
  panel: "#23262d",
  grid: "#343842",
  axis: "#6b7280",
  text: "#c9ced8",
  muted: "#8a909c",
  theta: "#f4f4f5",
  basin: "#f59e0b",
  hardFail: "#ef4444",
  halo: "rgba(255,255,255,0.85)",
  font: "10px sans-serif",
});

export const THETA_DASH = Object.freeze([5, 4]);

// ---------------------------------------------------------------- helpers

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

// Distinct, stable colour per original trajectory index. Golden-angle hue steps
// keep neighbouring indices far apart for any N.
export function colorForIndex(index) {
  const i = Number.isInteger(index) && index >= 0 ? index : 0;
  const hue = Math.round((210 + i * 137.508) % 360);
  const light = i % 2 === 0 ? 62 : 55;
  return `hsl(${hue}, 75%, ${light}%)`;
}

// Linear map from a data domain to a pixel range. A zero-width domain maps to the
// middle of the range instead of dividing by zero.
export function linearScale(domain, range) {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  const f = (v) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0));
  f.domain = [d0, d1];
  f.range = [r0, r1];
  f.invert = (p) => (r1 === r0 ? d0 : d0 + ((p - r0) / (r1 - r0)) * span);
  return f;
}

// "Nice" tick values (1, 2, 2.5, 5 x 10^k) covering [min, max] with about `count` ticks.
export function niceTicks(min, max, count = 4) {
  if (!isNum(min) || !isNum(max)) return [];
  if (min > max) [min, max] = [max, min];
  if (min === max) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.ceil(min / step - 1e-9) * step;
  const ticks = [];
  for (let v = first; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toFixed(12)));
  }
  return ticks;
}

// [lo, hi] over all finite values, padded so lines never sit on the frame.
// `minSpan` keeps a flat series (e.g. constant CFG) from filling the panel edge to edge.
export function paddedExtent(values, { pad = 0.08, minSpan = 0.05, fallback = [0, 1] } = {}) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (isNum(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) return [...fallback];
  if (hi - lo < minSpan) {
    const mid = (hi + lo) / 2;
    lo = mid - minSpan / 2;
    hi = mid + minSpan / 2;
  }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

// Split [[x, y|null], ...] into runs of consecutive defined points, so a line
// breaks where a value is missing (e.g. θ before warm-up).
export function segments(points) {
  const out = [];
  let cur = [];
  for (const [x, y] of points) {
    if (isNum(x) && isNum(y)) {
      cur.push([x, y]);
    } else if (cur.length) {
      out.push(cur);
      cur = [];
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

// Value of a point list at `step`, or the last defined value before it.
export function valueAtOrBefore(points, step) {
  let best = null;
  for (const [x, y] of points) {
    if (!isNum(y) || x > step) continue;
    if (best === null || x >= best[0]) best = [x, y];
  }
  return best ? best[1] : null;
}

// ---------------------------------------------------------------- series

export function createSeries() {
  return {
    total: 0,
    numTrajectories: 0,
    strategy: null,
    selected: null,
    final: false,
    lastStep: -1,
    theta: [],
    trajectories: [],
  };
}

function trajectory(series, index) {
  let t = series.trajectories.find((tr) => tr.index === index);
  if (!t) {
    t = { index, C: [], cfg: [], removedAt: null, removedReason: null, selected: false };
    series.trajectories.push(t);
    series.trajectories.sort((a, b) => a.index - b.index);
  }
  return t;
}

// Insert or replace the point at `step` (events may repeat a step; keep the newest).
function upsert(points, step, value) {
  const last = points[points.length - 1];
  if (last && last[0] === step) {
    last[1] = value;
  } else if (!last || last[0] < step) {
    points.push([step, value]);
  } else {
    const i = points.findIndex((p) => p[0] >= step);
    if (points[i][0] === step) points[i][1] = value;
    else points.splice(i, 0, [step, value]);
  }
}

function recordRemovals(series, removed) {
  if (!Array.isArray(removed)) return;
  for (const r of removed) {
    if (!r || !Number.isInteger(r.index) || !isNum(r.step)) continue;
    const t = trajectory(series, r.index);
    // The event list may be cumulative; the first report of a removal wins.
    if (t.removedAt === null) {
      t.removedAt = r.step;
      t.removedReason = typeof r.reason === "string" ? r.reason : null;
    }
  }
}

// Merge one live `scalingar.step` payload into `series`.
// Returns the series to use from now on: the same object updated in place, or a
// fresh series when the event belongs to a new run (different T or N, or the
// step went backwards, or the current series is a finished summary).
// Malformed events are ignored (the series is returned unchanged): a widget
// must never throw inside the websocket handler.
export function mergeStepEvent(series, event) {
  if (!event || !isNum(event.step) || !isNum(event.total)) return series;
  const ids = Array.isArray(event.ids) ? event.ids : [];
  const C = Array.isArray(event.C) ? event.C : [];
  const cfg = Array.isArray(event.cfg) ? event.cfg : [];
  const n = isNum(event.num_trajectories) ? event.num_trajectories : ids.length;

  let s = series ?? createSeries();
  const newRun =
    s.final ||
    (s.lastStep >= 0 && (event.step < s.lastStep || s.total !== event.total || s.numTrajectories !== n));
  if (newRun) s = createSeries();

  s.total = event.total;
  s.numTrajectories = n;
  s.lastStep = Math.max(s.lastStep, event.step);
  // Every trajectory exists from step 0 on, even before its first point arrives.
  for (let i = 0; i < n; i++) trajectory(s, i);

  ids.forEach((index, j) => {
    if (!Number.isInteger(index)) return;
    const t = trajectory(s, index);
    if (isNum(C[j])) upsert(t.C, event.step, C[j]);
    if (isNum(cfg[j])) upsert(t.cfg, event.step, cfg[j]);
  });
  upsert(s.theta, event.step, isNum(event.theta) ? event.theta : null);
  recordRemovals(s, event.removed);
  return s;
}

// Per-step arrays become [[step, value|null]]; `at` (from compactSummary) gives
// the step of each position when steps were dropped.
const toPoints = (arr, at) =>
  Array.isArray(arr) ? arr.map((v, i) => [at ? at[i] : i, isNum(v) ? v : null]).filter((p) => isNum(p[0])) : [];

// Build a finished series from Trace.summary() (the node's UI output).
export function seriesFromSummary(summary) {
  const s = createSeries();
  if (!summary || typeof summary !== "object") return s;
  const trajs = Array.isArray(summary.trajectories) ? summary.trajectories : [];
  s.final = true;
  s.strategy = typeof summary.strategy === "string" ? summary.strategy : null;
  s.selected = Number.isInteger(summary.selected) ? summary.selected : null;
  s.numTrajectories = isNum(summary.num_trajectories) ? summary.num_trajectories : trajs.length;
  const at = Array.isArray(summary.at) ? summary.at : null;
  s.theta = toPoints(summary.threshold, at);
  for (let i = 0; i < s.numTrajectories; i++) trajectory(s, i);
  for (const tr of trajs) {
    if (!tr || !Number.isInteger(tr.index)) continue;
    const t = trajectory(s, tr.index);
    t.C = toPoints(tr.C, at);
    t.cfg = toPoints(tr.cfg, at);
    t.removedAt = isNum(tr.removed_at) ? tr.removed_at : null;
    t.removedReason = t.removedAt === null ? null : tr.removed_reason ?? null;
    t.selected = tr.selected === true || tr.index === s.selected;
    if (tr.selected === true && s.selected === null) s.selected = tr.index;
  }
  // Last step that has any sample (summaries may be shorter than `steps`).
  let last = -1;
  for (const pts of [s.theta, ...s.trajectories.flatMap((t) => [t.C, t.cfg])]) {
    if (pts.length) last = Math.max(last, pts[pts.length - 1][0]);
  }
  s.total = isNum(summary.steps) ? summary.steps : last + 1;
  s.lastStep = last;
  return s;
}

// Shrink a summary for storage in the node's properties (so a reloaded workflow
// can redraw without re-running): keep every k-th step, plus each removal step,
// the first step where θ is defined and the last step; round to 4 decimals.
// Kept step numbers go in `at`, which seriesFromSummary() understands.
export function compactSummary(summary, maxPoints = 256) {
  if (!summary || !Array.isArray(summary.trajectories)) return summary;
  const trajs = summary.trajectories.filter((t) => t && typeof t === "object");
  let length = Array.isArray(summary.threshold) ? summary.threshold.length : 0;
  for (const t of trajs) length = Math.max(length, t.C?.length ?? 0, t.cfg?.length ?? 0);
  const stride = Math.max(1, Math.ceil(length / Math.max(1, maxPoints)));
  const keep = new Set();
  for (let i = 0; i < length; i += stride) keep.add(i);
  if (length > 0) keep.add(length - 1);
  for (const t of trajs) if (Number.isInteger(t.removed_at) && t.removed_at < length) keep.add(t.removed_at);
  const th = Array.isArray(summary.threshold) ? summary.threshold : [];
  const firstTheta = th.findIndex(isNum);
  if (firstTheta >= 0) keep.add(firstTheta);
  const at = [...keep].sort((a, b) => a - b);
  const pick = (arr) => at.map((i) => (Array.isArray(arr) && isNum(arr[i]) ? Math.round(arr[i] * 1e4) / 1e4 : null));
  return {
    steps: summary.steps,
    num_trajectories: summary.num_trajectories,
    strategy: summary.strategy,
    selected: summary.selected,
    at,
    threshold: pick(th),
    trajectories: trajs.map((t) => ({
      index: t.index,
      removed_at: t.removed_at ?? null,
      removed_reason: t.removed_reason ?? null,
      selected: t.selected === true,
      C: pick(t.C),
      cfg: pick(t.cfg),
    })),
  };
}

// ---------------------------------------------------------------- layout

// Main panel (C and θ) on top, a small CFG panel below, sharing the step axis.
export function computeLayout(width, height, opts = {}) {
  const left = opts.left ?? 38;
  const right = opts.right ?? 8;
  const top = opts.top ?? 20;
  const bottom = opts.bottom ?? 16;
  const gap = opts.gap ?? 14;
  const cfgShare = opts.cfgShare ?? 0.28;
  const w = Math.max(1, width - left - right);
  const inner = Math.max(2, height - top - bottom - gap);
  const cfgH = Math.max(1, Math.round(inner * cfgShare));
  const mainH = Math.max(1, inner - cfgH);
  return {
    width,
    height,
    main: { x: left, y: top, w, h: mainH },
    cfg: { x: left, y: top + mainH + gap, w, h: cfgH },
  };
}

// Scales for a series inside a layout.
export function computeScales(series, layout) {
  const s = series ?? createSeries();
  const xMax = Math.max(1, (s.total || 0) - 1, s.lastStep);
  const x = linearScale([0, xMax], [layout.main.x, layout.main.x + layout.main.w]);
  const cVals = [];
  const cfgVals = [];
  for (const t of s.trajectories) {
    for (const p of t.C) cVals.push(p[1]);
    for (const p of t.cfg) cfgVals.push(p[1]);
  }
  for (const p of s.theta) cVals.push(p[1]);
  const cDom = paddedExtent(cVals, { minSpan: 0.05, fallback: [0, 1] });
  const cfgDom = paddedExtent(cfgVals, { minSpan: 0.5, fallback: [0, 1] });
  const m = layout.main;
  const g = layout.cfg;
  return {
    x,
    c: linearScale(cDom, [m.y + m.h, m.y]),
    cfg: linearScale(cfgDom, [g.y + g.h, g.y]),
  };
}

// ---------------------------------------------------------------- drawing

function polyline(ctx, pts, sx, sy) {
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(sx(x), sy(y)) : ctx.lineTo(sx(x), sy(y))));
  if (pts.length === 1) {
    // A single sample still shows as a short tick instead of vanishing.
    ctx.lineTo(sx(pts[0][0]) + 1, sy(pts[0][1]));
  }
  ctx.stroke();
}

function setDash(ctx, dash) {
  if (typeof ctx.setLineDash === "function") ctx.setLineDash(dash);
}

function frame(ctx, r, yScale, ticks, theme, fmt) {
  ctx.fillStyle = theme.panel;
  ctx.fillRect(r.x, r.y, r.w, r.h);
  ctx.lineWidth = 1;
  ctx.strokeStyle = theme.grid;
  ctx.fillStyle = theme.muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of ticks) {
    const py = Math.round(yScale(v)) + 0.5;
    if (py < r.y - 0.5 || py > r.y + r.h + 0.5) continue;
    ctx.beginPath();
    ctx.moveTo(r.x, py);
    ctx.lineTo(r.x + r.w, py);
    ctx.stroke();
    ctx.fillText(fmt(v), r.x - 4, py);
  }
  ctx.strokeStyle = theme.axis;
  ctx.strokeRect(r.x + 0.5, r.y + 0.5, r.w - 1, r.h - 1);
}

const fmtTick = (v) => {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  return Number(v.toFixed(a >= 10 ? 1 : 2)).toString();
};

export function drawRemovalMarker(ctx, px, py, reason, theme = THEME, size = 4) {
  ctx.save();
  setDash(ctx, []);
  ctx.lineWidth = 2;
  if (reason === "hard_fail") {
    // Cross: abrupt kill by the absolute guard.
    ctx.strokeStyle = theme.hardFail;
    ctx.beginPath();
    ctx.moveTo(px - size, py - size);
    ctx.lineTo(px + size, py + size);
    ctx.moveTo(px - size, py + size);
    ctx.lineTo(px + size, py - size);
    ctx.stroke();
  } else {
    // Ring: the trajectory sat in a low-confidence basin for the recovery window.
    ctx.strokeStyle = reason === "basin" ? theme.basin : theme.muted;
    ctx.beginPath();
    ctx.arc(px, py, size, 0, Math.PI * 2);
    ctx.stroke();
  }
  ctx.restore();
}

// Title row above the main panel: title on the left, step counter on the right,
// and (when there is room) the marker keys in between.
function legend(ctx, layout, series, theme) {
  const y = Math.max(6, layout.main.y - 9);
  const left = layout.main.x;
  const right = layout.main.x + layout.main.w;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillStyle = theme.text;
  ctx.fillText(series.strategy ? `C · ${series.strategy}` : "C", left, y);
  ctx.textAlign = "right";
  ctx.fillStyle = theme.muted;
  if (series.lastStep >= 0 && series.total) {
    ctx.fillText(`step ${Math.min(series.lastStep + 1, series.total)}/${series.total}`, right, y);
  }
  if (layout.main.w < 300) return;
  // Keys only for the marks this plot shows, packed from a fixed start: θ once it is defined, a ring or a
  // cross once a trajectory left that way.
  const reasons = new Set(series.trajectories.filter((t) => t.removedAt != null).map((t) => t.removedReason));
  const keys = [];
  if (series.theta.some((p) => p[1] != null)) keys.push({ label: "θ", width: 31, mark: null });
  if (reasons.has("basin")) keys.push({ label: "basin", width: 44, mark: "basin" });
  if (reasons.has("hard_fail")) keys.push({ label: "hard fail", width: 60, mark: "hard_fail" });
  let x = right - 230;
  ctx.save();
  ctx.textAlign = "left";
  for (const key of keys) {
    if (key.mark === null) {
      ctx.strokeStyle = theme.theta;
      ctx.lineWidth = 1.5;
      setDash(ctx, THETA_DASH);
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x + 14, y);
      ctx.stroke();
      setDash(ctx, []);
      ctx.fillStyle = theme.text;
      ctx.fillText(key.label, x + 17, y);
    } else {
      drawRemovalMarker(ctx, x + 4, y, key.mark, theme, 3);
      ctx.fillStyle = theme.text;
      ctx.fillText(key.label, x + 11, y);
    }
    x += key.width + 12;
  }
  ctx.restore();
}

// Draw the whole plot. `width`/`height` are in CSS pixels (the caller scales the
// context for devicePixelRatio). Returns { layout, scales } for callers and tests.
export function drawPlot(ctx, series, opts = {}) {
  const theme = { ...THEME, ...(opts.theme || {}) };
  const width = opts.width ?? ctx.canvas?.width ?? 400;
  const height = opts.height ?? ctx.canvas?.height ?? 240;
  const s = series ?? createSeries();
  const layout = computeLayout(width, height, opts.layout);
  const scales = computeScales(s, layout);

  ctx.save();
  setDash(ctx, []);
  ctx.font = theme.font;
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, width, height);

  frame(ctx, layout.main, scales.c, niceTicks(...scales.c.domain, 4), theme, fmtTick);
  frame(ctx, layout.cfg, scales.cfg, niceTicks(...scales.cfg.domain, 3), theme, fmtTick);
  legend(ctx, layout, s, theme);

  // Step axis labels under the CFG panel.
  ctx.fillStyle = theme.muted;
  ctx.textBaseline = "top";
  ctx.textAlign = "center";
  const bottomY = layout.cfg.y + layout.cfg.h + 3;
  for (const v of niceTicks(...scales.x.domain, Math.max(2, Math.floor(layout.main.w / 70)))) {
    ctx.fillText(fmtTick(v), scales.x(v), bottomY);
  }
  // CFG panel title sits in the gap between the panels.
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText("CFG", layout.cfg.x, layout.cfg.y - 1);

  const hasData = s.trajectories.some((t) => t.C.some((p) => isNum(p[1])));
  if (!hasData) {
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(opts.emptyText ?? "waiting for ScalingAR steps…", layout.main.x + layout.main.w / 2, layout.main.y + layout.main.h / 2);
  }

  // Selected trajectory last so it sits on top; others dimmed once a choice exists.
  const order = [...s.trajectories].sort((a, b) => Number(a.selected) - Number(b.selected));
  const anySelected = s.trajectories.some((t) => t.selected);
  setDash(ctx, []);
  ctx.lineJoin = "round";
  for (const t of order) {
    const color = colorForIndex(t.index);
    const cSegs = segments(t.C);
    const cfgSegs = segments(t.cfg);
    if (t.selected) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = theme.halo;
      ctx.lineWidth = 4.5;
      for (const seg of cSegs) polyline(ctx, seg, scales.x, scales.c);
      ctx.lineWidth = 2.5;
    } else {
      ctx.globalAlpha = anySelected ? 0.55 : 0.95;
      ctx.lineWidth = 1.25;
    }
    ctx.strokeStyle = color;
    for (const seg of cSegs) polyline(ctx, seg, scales.x, scales.c);
    ctx.lineWidth = t.selected ? 2 : 1;
    for (const seg of cfgSegs) polyline(ctx, seg, scales.x, scales.cfg);
  }
  ctx.globalAlpha = 1;

  // Threshold θ: dashed, broken where undefined (before warm-up).
  ctx.strokeStyle = theme.theta;
  ctx.lineWidth = 1.5;
  setDash(ctx, THETA_DASH);
  for (const seg of segments(s.theta)) polyline(ctx, seg, scales.x, scales.c);
  setDash(ctx, []);

  // Removal markers at (removal step, C at or just before it).
  for (const t of s.trajectories) {
    if (t.removedAt === null) continue;
    const y = valueAtOrBefore(t.C, t.removedAt);
    if (y === null) continue;
    drawRemovalMarker(ctx, scales.x(t.removedAt), scales.c(y), t.removedReason, theme);
  }

  // Name the chosen trajectory, in its colour, in the row between the panels
  // (on the plot it would cover the lines it labels).
  const sel = s.trajectories.find((t) => t.selected);
  if (sel) {
    ctx.fillStyle = colorForIndex(sel.index);
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillText(`chosen #${sel.index}`, layout.cfg.x + layout.cfg.w, layout.cfg.y - 1);
  }
  ctx.restore();
  return { layout, scales };
}

// Size a <canvas> (or anything with the same fields) to its CSS box at the given
// pixel ratio and draw the series into it. Returns drawPlot's result, or null
// when the canvas has no size yet (e.g. a collapsed node).
export function renderCanvas(canvas, series, opts = {}) {
  const cssW = Math.round(opts.width ?? canvas.clientWidth ?? 0);
  const cssH = Math.round(opts.height ?? canvas.clientHeight ?? 0);
  if (!(cssW > 0 && cssH > 0)) return null;
  const ratio = opts.pixelRatio > 0 ? opts.pixelRatio : 1;
  const pw = Math.round(cssW * ratio);
  const ph = Math.round(cssH * ratio);
  // Reassigning width/height clears the bitmap, so only do it on a real change.
  if (canvas.width !== pw) canvas.width = pw;
  if (canvas.height !== ph) canvas.height = ph;
  const ctx = canvas.getContext("2d");
  if (!ctx) return null;
  if (typeof ctx.setTransform === "function") ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return drawPlot(ctx, series, { ...opts, width: cssW, height: cssH });
}
