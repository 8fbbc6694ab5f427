// ComfyUI frontend extension: a live confidence plot inside the ScalingAR Sampler node.
//
// Live: the sampler sends throttled `scalingar.step` websocket events (payload =
// the engine's step snapshot plus {"node": <execution id>}); each one is merged
// into the node's series and redrawn on the next animation frame.
// Final: the node's UI output carries `scalingar_trace: [Trace.summary()]`;
// onExecuted (also fired for cached results) and onNodeOutputsUpdated (outputs
// restored from the queue/history) redraw from it. A compact copy is kept in the
// node's properties so a reloaded workflow shows its last plot without re-running.
//
// All drawing is in ./scalingar_plot.js (pure, tested with `node --test tests/js/`).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  compactSummary,
  createSeries,
  mergeStepEvent,
  renderCanvas,
  seriesFromSummary,
} from "./scalingar_plot.js";

const NODE_TYPE = "ScalingARSampler";
const EVENT = "scalingar.step";
const WIDGET_NAME = "scalingar_plot";
const PROPERTY = "scalingar_plot"; // compact summary for reloads (not sent to the server)
const MIN_HEIGHT = 220;
const MIN_WIDTH = 420;
const VIEW = Symbol("scalingarPlotView");

class PlotView {
  constructor(node) {
    this.node = node;
    this.series = createSeries();
    this.events = 0;
    this.frame = 0;
    this.lastRatio = 0;

    this.element = document.createElement("div");
    this.element.className = "scalingar-plot-widget";
    Object.assign(this.element.style, {
      width: "100%",
      height: "100%",
      minHeight: `${MIN_HEIGHT - 20}px`,
      boxSizing: "border-box",
      overflow: "hidden",
      // The plot is read-only: let drags and wheel zoom reach the graph canvas below.
      pointerEvents: "none",
    });
    this.canvas = document.createElement("canvas");
    this.canvas.className = "scalingar-plot";
    Object.assign(this.canvas.style, { width: "100%", height: "100%", display: "block", borderRadius: "4px" });
    this.element.appendChild(this.canvas);

    // Redraw when the node (and so the widget box) is resized.
    if (typeof ResizeObserver === "function") {
      this.resizeObserver = new ResizeObserver(() => this.schedule());
      this.resizeObserver.observe(this.element);
    }
  }

  onStep(payload) {
    this.series = mergeStepEvent(this.series, payload);
    this.events += 1;
    this.schedule();
  }

  setSummary(summary, { store = true } = {}) {
    if (!summary || !Array.isArray(summary.trajectories)) return;
    this.series = seriesFromSummary(summary);
    if (store) {
      this.node.properties = this.node.properties || {};
      this.node.properties[PROPERTY] = compactSummary(summary, 256);
    }
    this.schedule();
  }

  // Coalesce bursts of events into one draw per animation frame.
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // DOM widgets are scaled with the graph's zoom by a CSS transform; draw at the
  // zoomed resolution so the plot stays sharp when zoomed in.
  pixelRatio() {
    const zoom = app.canvas?.ds?.scale;
    const z = Number.isFinite(zoom) ? Math.min(Math.max(zoom, 1), 4) : 1;
    return (window.devicePixelRatio || 1) * z;
  }

  // Called by the frontend whenever it redraws the node: catches zoom changes.
  onCanvasDraw() {
    const ratio = this.pixelRatio();
    if (ratio !== this.lastRatio) this.schedule();
  }

  draw() {
    this.lastRatio = this.pixelRatio();
    const drawn = renderCanvas(this.canvas, this.series, { pixelRatio: this.lastRatio });
    // State for tests and debugging, readable from the DOM.
    const d = this.canvas.dataset;
    d.drawn = drawn ? "1" : "0";
    d.final = this.series.final ? "1" : "0";
    d.lastStep = String(this.series.lastStep);
    d.events = String(this.events);
  }

  dispose() {
    this.resizeObserver?.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}

function attachView(node) {
  if (node[VIEW]) return node[VIEW];
  const view = new PlotView(node);
  node[VIEW] = view;
  const widget = node.addDOMWidget(WIDGET_NAME, "scalingar_plot", view.element, {
    serialize: false, // not an input: keep it out of the API prompt
    hideOnZoom: false,
    getMinHeight: () => MIN_HEIGHT,
    onDraw: () => view.onCanvasDraw(),
    getValue: () => undefined,
    setValue: () => {},
  });
  // ...and out of widgets_values, so positional widget values stay those of the inputs.
  widget.serialize = false;
  const onRemove = widget.onRemove;
  widget.onRemove = function () {
    view.dispose();
    return onRemove?.apply(this, arguments);
  };
  if (node.size && node.size[0] < MIN_WIDTH) node.setSize?.([MIN_WIDTH, node.size[1]]);
  view.schedule();
  return view;
}

// Resolve an execution id ("12", or "5:12" inside a subgraph) to its node.
function nodeForExecutionId(id) {
  const parts = String(id ?? "").split(":").filter(Boolean);
  let graph = app.rootGraph ?? app.graph;
  if (!graph || !parts.length) return null;
  for (const part of parts.slice(0, -1)) {
    const holder = graph.getNodeById(part) ?? graph.getNodeById(Number(part));
    graph = holder?.subgraph;
    if (!graph) return null;
  }
  const last = parts[parts.length - 1];
  return graph.getNodeById(last) ?? graph.getNodeById(Number(last)) ?? null;
}

function summaryOf(output) {
  const s = output?.scalingar_trace;
  return Array.isArray(s) ? s[0] : null;
}

app.registerExtension({
  name: "ScalingAR.ConfidencePlot",

  setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = nodeForExecutionId(detail?.node);
      if (!node || node[VIEW] === undefined) return;
      node[VIEW].onStep(detail);
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      attachView(this);
      return r;
    };

    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      const stored = this.properties?.[PROPERTY];
      if (stored) attachView(this).setSummary(stored, { store: false });
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const r = onExecuted?.apply(this, arguments);
      const summary = summaryOf(output);
      if (summary) attachView(this).setSummary(summary);
      return r;
    };
  },

  // Outputs restored without an execution (e.g. opening a queue/history item).
  onNodeOutputsUpdated(outputs) {
    for (const [id, output] of Object.entries(outputs ?? {})) {
      const summary = summaryOf(output);
      if (!summary) continue;
      const node = nodeForExecutionId(id);
      if (node?.comfyClass === NODE_TYPE || node?.type === NODE_TYPE) attachView(node).setSummary(summary);
    }
  },
});
