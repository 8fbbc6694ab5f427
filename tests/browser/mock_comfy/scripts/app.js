// Stand-in for ComfyUI's scripts/app.js shim: just enough of the graph and
// extension API for web/scalingar_widget.js (see widget_harness.html).
class FakeGraph {
  constructor() {
    this.nodes = new Map();
  }
  add(node) {
    this.nodes.set(String(node.id), node);
    return node;
  }
  getNodeById(id) {
    return this.nodes.get(String(id)) ?? null;
  }
}

export const app = {
  extensions: [],
  rootGraph: new FakeGraph(),
  FakeGraph,
  registerExtension(ext) {
    this.extensions.push(ext);
  },
};
window.__fakeApp = app;
