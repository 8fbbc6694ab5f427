// A recording stand-in for CanvasRenderingContext2D: it keeps the state
// (styles, dash, save/restore stack) like a real context and records every
// stroked path, filled rectangle and text together with the state in force
// when it was drawn, so tests can assert what ended up on the canvas.

const STATE_KEYS = [
  "strokeStyle",
  "fillStyle",
  "lineWidth",
  "globalAlpha",
  "font",
  "textAlign",
  "textBaseline",
  "lineJoin",
  "lineCap",
];

export class FakeContext {
  constructor(width = 400, height = 240) {
    this.canvas = { width, height };
    this.strokeStyle = "#000000";
    this.fillStyle = "#000000";
    this.lineWidth = 1;
    this.globalAlpha = 1;
    this.font = "10px sans-serif";
    this.textAlign = "start";
    this.textBaseline = "alphabetic";
    this.lineJoin = "miter";
    this.lineCap = "butt";
    this._dash = [];
    this._stack = [];
    this._path = null;
    this.calls = []; // every method call, by name
    this.strokes = []; // { subpaths: [[[x,y],...]], arcs: [{x,y,r}], style }
    this.fills = [];
    this.rects = []; // { kind: "fill"|"stroke"|"clear", x, y, w, h, style }
    this.texts = []; // { text, x, y, style }
  }

  _style() {
    const s = { dash: [...this._dash] };
    for (const k of STATE_KEYS) s[k] = this[k];
    return s;
  }

  _log(name, args) {
    this.calls.push({ name, args });
    for (const a of args) {
      if (typeof a === "number" && !Number.isFinite(a)) {
        throw new Error(`FakeContext.${name} got a non-finite argument: ${args.join(", ")}`);
      }
    }
  }

  save() {
    this._log("save", []);
    this._stack.push({ ...this._style(), dash: [...this._dash] });
  }

  restore() {
    this._log("restore", []);
    const s = this._stack.pop();
    if (!s) return;
    for (const k of STATE_KEYS) this[k] = s[k];
    this._dash = s.dash;
  }

  setLineDash(d) {
    this._log("setLineDash", [d]);
    this._dash = [...d];
  }

  getLineDash() {
    return [...this._dash];
  }

  beginPath() {
    this._log("beginPath", []);
    this._path = { subpaths: [], arcs: [] };
  }

  _ensurePath() {
    if (!this._path) this._path = { subpaths: [], arcs: [] };
    return this._path;
  }

  moveTo(x, y) {
    this._log("moveTo", [x, y]);
    this._ensurePath().subpaths.push([[x, y]]);
  }

  lineTo(x, y) {
    this._log("lineTo", [x, y]);
    const p = this._ensurePath();
    if (!p.subpaths.length) p.subpaths.push([]);
    p.subpaths[p.subpaths.length - 1].push([x, y]);
  }

  arc(x, y, r, a0, a1) {
    this._log("arc", [x, y, r, a0, a1]);
    this._ensurePath().arcs.push({ x, y, r });
  }

  closePath() {
    this._log("closePath", []);
  }

  stroke() {
    this._log("stroke", []);
    const p = this._ensurePath();
    this.strokes.push({ subpaths: p.subpaths.map((s) => s.map((pt) => [...pt])), arcs: [...p.arcs], style: this._style() });
  }

  fill() {
    this._log("fill", []);
    const p = this._ensurePath();
    this.fills.push({ subpaths: p.subpaths, arcs: [...p.arcs], style: this._style() });
  }

  fillRect(x, y, w, h) {
    this._log("fillRect", [x, y, w, h]);
    this.rects.push({ kind: "fill", x, y, w, h, style: this._style() });
  }

  strokeRect(x, y, w, h) {
    this._log("strokeRect", [x, y, w, h]);
    this.rects.push({ kind: "stroke", x, y, w, h, style: this._style() });
  }

  clearRect(x, y, w, h) {
    this._log("clearRect", [x, y, w, h]);
    this.rects.push({ kind: "clear", x, y, w, h, style: this._style() });
  }

  fillText(text, x, y) {
    this._log("fillText", [x, y]);
    this.texts.push({ text: String(text), x, y, style: this._style() });
  }

  measureText(text) {
    return { width: String(text).length * 6 };
  }

  // Strokes drawn in a given colour (e.g. one trajectory's lines).
  strokesWithColor(color) {
    return this.strokes.filter((s) => s.style.strokeStyle === color);
  }
}
