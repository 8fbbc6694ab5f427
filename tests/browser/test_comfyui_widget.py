"""End to end in a real browser: the ComfyUI frontend served by a real ComfyUI server with this pack,
the shipped toy workflow loaded and queued from the page, and the sampler's plot widget checked
for drawn lines, both in the canvas bitmap and in a screenshot of what the user sees.

Needs the ComfyUI built by ``scripts/comfyui/setup.sh`` and Debian's ``chromium``. Without them the
test is skipped, unless SCALINGAR_REQUIRE_BROWSER=1 (CI) makes that a failure.

Runs in both of the frontend's node-rendering modes: the classic LiteGraph canvas and the Vue-based
"Nodes 2.0" (setting ``Comfy.VueNodes.Enabled``, offered by the bundled frontend 1.32.9), where the
widget's DOM element is mounted inside a Vue node component instead of floating over the canvas.

Also re-queues the same prompt on a freshly loaded graph: a full cache hit, where the plot must be
redrawn from the cached UI output alone.

Artifacts (test-artifacts/, suffix ``_vue`` for the Vue mode): comfyui_toy_workflow.png (whole UI),
comfyui_widget.png (the plot, at 2x), and in the classic mode comfyui_trace_plot.png and
comfyui_entropy_map.png (the Trace Plot and entropy-map preview nodes, enlarged, at 2x). With
SCALINGAR_UPDATE_SCREENSHOT=1 they are also copied to docs/ for the README, each with a JSON beside it
recording the sha256 of the workflow, the model weights and the drawing code it shows
(scripts/readme_pictures.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time

import pytest
from browser_support import CANVAS_STATS_JS, REPO, require_browser
from chromium_cdp import Browser

sys.path.insert(0, str(REPO / "scripts" / "comfyui"))
import harness  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
import readme_pictures  # noqa: E402

pytestmark = pytest.mark.comfyui

WORKFLOW = REPO / "workflows" / "toy_shapes_scalingar.json"
DOCS = REPO / "docs"
# artifact name -> docs name (README pictures)
DOCS_COPIES = {"comfyui_toy_workflow.png": "widget_screenshot.png", "comfyui_widget.png": "widget_closeup.png",
               "comfyui_widget_vue.png": "widget_closeup_vue.png",
               "comfyui_trace_plot.png": "comfyui_trace_plot.png", "comfyui_entropy_map.png": "comfyui_entropy_map.png"}
MODES = {"classic": {"Comfy.VueNodes.Enabled": False},
         "vue": {"Comfy.VueNodes.Enabled": True, "Comfy.VueNodes.AutoScaleLayout": True}}
VIEWPORT = (1600, 900)
EXTENSION = "ScalingAR.ConfidencePlot"
RUN_TIMEOUT = float(os.environ.get("SCALINGAR_BROWSER_RUN_TIMEOUT", "600"))

# Frontend settings for an unattended, uncluttered page: no new-user template browser, no minimap,
# no canvas info overlay.
# no canvas info overlay, and full-detail node drawing at any zoom (so the fitted overview still shows
# titles and widgets).
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False,
            "LiteGraph.Canvas.MinFontSizeForLOD": 1}
INIT_SCRIPT = "try { localStorage.setItem('vueNodesBannerDismissed', 'true'); } catch (e) {}"

APP = "window.comfyAPI.app.app"

# Record what the server tells this page, so failures say why.
WATCH_JS = f"""
(() => {{
  const api = window.comfyAPI.api.api;
  const w = window.__scalingarWatch = {{ steps: {{}}, errors: [], success: 0, executed: [], queued: [], refused: [] }};
  // app.queuePrompt's boolean is not reliable (an empty node_errors object reads as an error), so
  // keep the server's answers to POST /prompt.
  const post = api.queuePrompt.bind(api);
  api.queuePrompt = async (...args) => {{
    try {{ const r = await post(...args); w.queued.push(r); return r; }}
    catch (e) {{ w.refused.push(e && e.response ? e.response : String(e)); throw e; }}
  }};
  api.addEventListener('scalingar.step', (e) => {{
    const id = String(e.detail && e.detail.node);
    w.steps[id] = (w.steps[id] || 0) + 1;
  }});
  api.addEventListener('execution_error', (e) => w.errors.push(e.detail));
  api.addEventListener('execution_success', () => {{ w.success += 1; }});
  api.addEventListener('executed', (e) => w.executed.push(String(e.detail && e.detail.node)));
  return true;
}})()
"""

SAMPLERS_JS = f"""
(() => {APP}.graph.nodes
  .filter((n) => n.comfyClass === 'ScalingARSampler')
  .map((n) => {{
    const w = (n.widgets || []).find((x) => x.name === 'scalingar_plot');
    const c = w && w.element && w.element.querySelector('canvas.scalingar-plot');
    const r = c ? c.getBoundingClientRect() : null;
    return {{ id: String(n.id), widget: !!w, serialize: w ? w.serialize : null,
             data: c ? {{ ...c.dataset }} : null,
             rect: r ? {{ x: r.x, y: r.y, width: r.width, height: r.height }} : null }};
  }}))()
"""


@pytest.fixture(scope="module")
def comfy_server():
    if not harness.is_set_up():
        msg = f"no ComfyUI in {harness.comfyui_home()}: run `bash scripts/comfyui/setup.sh`"
        if require_browser():
            pytest.fail(msg)
        pytest.skip(msg)
    server = harness.ComfyServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def big_browser(chromium_path):
    """A wider page than the default fixture, so the fitted workflow is readable in the screenshot."""
    b = Browser(chromium_path, width=VIEWPORT[0], height=VIEWPORT[1])
    try:
        yield b
    finally:
        b.close()


def _pack_import_problem(log: str) -> str | None:
    for line in log.splitlines():
        if "IMPORT FAILED" in line and "ScalingAR" in line:
            return line.strip()
    return None


def _colored_pixels_in(png: bytes, rect: dict) -> int | None:
    """Strongly coloured pixels of the screenshot inside rect (None without Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    im = Image.open(io.BytesIO(png)).convert("RGB")
    box = tuple(int(round(v)) for v in (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"]))
    crop = im.crop(box)
    raw = crop.tobytes()
    return sum(1 for i in range(0, len(raw), 3) if max(raw[i:i + 3]) - min(raw[i:i + 3]) > 60)


# Screen rectangle (CSS pixels) of a node, title bar included, in either rendering mode: the Vue node's
# element when there is one, else the canvas transform of the node's bounds.
NODE_RECT_JS = f"""
(id) => {{
  const el = document.querySelector(`[data-node-id="${{id}}"]`);
  if (el) {{ const r = el.getBoundingClientRect(); return {{ x: r.x, y: r.y, width: r.width, height: r.height }}; }}
  const c = {APP}.canvas, n = {APP}.graph.getNodeById(id), b = c.canvas.getBoundingClientRect();
  const title = window.LiteGraph.NODE_TITLE_HEIGHT, s = c.ds.scale, o = c.ds.offset;
  return {{ x: b.x + (n.pos[0] + o[0]) * s, y: b.y + (n.pos[1] - title + o[1]) * s,
           width: n.size[0] * s, height: (n.size[1] + title) * s }};
}}
"""

SETTLE_JS = "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 500))))"


def _centre_on_node(browser, node_id, max_scale: float = 2.0) -> None:
    """Zoom so the node fills most of the view (at most ``max_scale``) and centre it, clear of the
    floating menus at the page's top."""
    browser.evaluate(f"""(() => {{
      const c = {APP}.canvas, n = {APP}.graph.getNodeById({node_id}), b = c.canvas.getBoundingClientRect();
      const title = window.LiteGraph.NODE_TITLE_HEIGHT, w = n.size[0], h = n.size[1] + title;
      const s = Math.min(0.75 * b.width / w, 0.75 * b.height / h, {max_scale});
      c.ds.scale = s;
      c.ds.offset[0] = b.width / 2 / s - (n.pos[0] + w / 2);
      c.ds.offset[1] = b.height / 2 / s - (n.pos[1] - title + h / 2);
      c.setDirty(true, true);
      return s; }})()""")
    browser.evaluate(SETTLE_JS)


@pytest.mark.parametrize("mode", list(MODES))
def test_toy_workflow_plots_in_the_browser(comfy_server, big_browser, artifacts, mode):
    browser = big_browser
    suffix = "" if mode == "classic" else f"_{mode}"
    problem = _pack_import_problem(comfy_server.log())
    assert problem is None, f"the pack did not import: {problem}\n{comfy_server.log()[-4000:]}"
    assert WORKFLOW.is_file(), f"missing {WORKFLOW.relative_to(REPO)}"
    comfy_server.request("POST", "/settings", {**SETTINGS, **MODES[mode]})

    t0 = time.monotonic()
    browser.add_init_script(INIT_SCRIPT)
    browser.navigate(comfy_server.url + "/", timeout=120)
    # Ready = our extension registered and the node definitions (from /object_info) turned into types;
    # the extensions load first, so waiting for them alone races the node registration.
    browser.wait_for(f"window.comfyAPI?.app?.app?.graph && {APP}.extensions?.some((e) => e.name === '{EXTENSION}')"
                     " && window.LiteGraph?.registered_node_types?.ScalingARSampler"
                     " && window.LiteGraph.registered_node_types.PreviewImage", timeout=120)
    load_s = time.monotonic() - t0
    vue = browser.evaluate(f"{APP}.extensionManager.setting.get('Comfy.VueNodes.Enabled')")
    assert vue is (mode == "vue"), f"the frontend did not switch to the {mode} node rendering"
    browser.evaluate(WATCH_JS)

    # Load the shipped workflow the way a drag-and-drop does, then check every node type exists.
    workflow = json.loads(WORKFLOW.read_text())
    for node in workflow["nodes"]:  # a seed per mode: the server is shared, and a cache hit sends no live events
        if node["type"] == "ScalingARSampler":
            node["widgets_values"][2] = list(MODES).index(mode)
    browser.evaluate(f"{APP}.loadGraphData({json.dumps(workflow)}, true, true, 'toy_shapes_scalingar')", timeout=60)
    missing = browser.evaluate(
        f"{APP}.graph.nodes.filter((n) => n.has_errors).map((n) => n.last_serialization?.type ?? n.type)")
    assert not missing, f"node types unknown to the frontend: {missing}"
    samplers = browser.evaluate(SAMPLERS_JS)
    assert samplers, "the toy workflow has no ScalingARSampler node"
    for s in samplers:
        assert s["widget"] and s["serialize"] is False, s
    if mode == "vue":  # the plot lives inside the Vue node's own element
        inside = browser.evaluate(f"[...document.querySelectorAll('canvas.scalingar-plot')].map((c) =>"
                                  f" c.closest('[data-node-id]')?.getAttribute('data-node-id') ?? null)")
        assert inside == [s["id"] for s in samplers], inside

    # Queue from the page (its websocket client gets the live events), wait for every plot to finish.
    t1 = time.monotonic()
    browser.evaluate(f"{APP}.queuePrompt(0, 1)", timeout=60)
    answer = browser.evaluate("window.__scalingarWatch")
    assert not answer["refused"], f"POST /prompt refused the workflow: {json.dumps(answer['refused'])[:3000]}"
    assert answer["queued"] and answer["queued"][0].get("prompt_id"), answer
    assert not answer["queued"][0].get("node_errors"), answer["queued"][0]
    done_js = (f"(() => {{ const w = window.__scalingarWatch; if (w.errors.length) return {{ error: w.errors }};"
               f" const s = ({SAMPLERS_JS}); return s.length && s.every((x) => x.data && x.data.final === '1')"
               f" ? {{ ok: s }} : false; }})()")
    try:
        outcome = browser.wait_for(done_js, timeout=RUN_TIMEOUT, interval=0.5)
    except Exception:
        browser.screenshot(str(artifacts / f"comfyui_toy_workflow{suffix}_timeout.png"))
        raise AssertionError(f"workflow did not finish: {browser.evaluate('window.__scalingarWatch')}\n"
                             f"server log tail:\n{comfy_server.log()[-3000:]}")
    run_s = time.monotonic() - t1
    assert "error" not in outcome, f"execution_error: {json.dumps(outcome['error'])[:3000]}"

    watch = browser.evaluate("window.__scalingarWatch")
    for s in outcome["ok"]:
        # Live events reached this page for this node, and the widget consumed them.
        assert watch["steps"].get(s["id"], 0) > 0, f"no scalingar.step events for node {s['id']}: {watch}"
        assert int(s["data"]["events"]) > 0, s
        assert int(s["data"]["lastStep"]) > 0, s

    # Centre the workflow, let the plots redraw at the new zoom, then look at the pixels.
    browser.evaluate(f"{APP}.extensionManager.command.execute('Comfy.Canvas.FitView')", timeout=30)
    browser.evaluate(SETTLE_JS)
    samplers = browser.evaluate(SAMPLERS_JS)
    for s in samplers:
        stats = browser.evaluate(
            f"({CANVAS_STATS_JS})(document.querySelectorAll('canvas.scalingar-plot')[{samplers.index(s)}])")
        assert stats and stats["colored"] > 300 and stats["nonBg"] > 2000, (s, stats)

    # Output previews load asynchronously: wait for every preview image before the overview shot.
    previews = browser.evaluate(f"{APP}.graph.nodes.filter((n) => n.type === 'PreviewImage' || n.type === 'SaveImage')"
                                ".map((n) => ({ id: n.id, title: n.title }))")
    assert any(p["title"].startswith("Entropy map") for p in previews), previews
    if mode == "classic":
        ids = json.dumps([p["id"] for p in previews])
        browser.wait_for(f"{ids}.every((id) => {{ const imgs = {APP}.graph.getNodeById(id).imgs || [];"
                         " return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); })",
                         timeout=60)
    else:  # Vue nodes show outputs as <img> elements inside the node
        ids = json.dumps([str(p["id"]) for p in previews])
        browser.wait_for(f"{ids}.every((id) => [...document.querySelectorAll(`[data-node-id=\"${{id}}\"] img`)]"
                         ".some((i) => i.complete && i.naturalWidth > 0))", timeout=60)
    browser.evaluate(SETTLE_JS)
    shot = artifacts / f"comfyui_toy_workflow{suffix}.png"
    browser.screenshot(str(shot))
    png = shot.read_bytes()
    first = samplers[0]["rect"]
    visible = _colored_pixels_in(png, first)
    if visible is not None:
        assert visible > 100, f"the plot is not visible on screen (covered or off-canvas?): {first}"

    if mode == "classic":
        # The other outputs an artist looks at: the Trace Plot node's image and the entropy map, each preview
        # node enlarged and shown at 1:1 (the graph canvas draws at the page's pixel ratio, here 1).
        for title, name in (("Trace plot", "comfyui_trace_plot.png"), ("Entropy map", "comfyui_entropy_map.png")):
            node = next(p for p in previews if p["title"].startswith(title))
            browser.evaluate(f"(() => {{ const n = {APP}.graph.getNodeById({node['id']}); n.setSize([800, 600]);"
                             " n.pos = [4000, 2000]; return true; })()")  # enlarged, away from the others
            _centre_on_node(browser, node["id"], max_scale=1.0)
            rect = browser.evaluate(f"({NODE_RECT_JS})({node['id']})")
            browser.screenshot(str(artifacts / name), clip={**rect, "scale": 1})
            assert (_colored_pixels_in((artifacts / name).read_bytes(), {**rect, "x": 0, "y": 0}) or 0) > 5000

    # Close-up: the (first) sampler node filling the view at a device pixel ratio of 2 (the widget draws
    # its bitmap for the ratio), then clip its plot.
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 2, "mobile": False})
    _centre_on_node(browser, samplers[0]["id"], max_scale=1.0)
    near = browser.evaluate(SAMPLERS_JS)[0]["rect"]
    closeup = artifacts / f"comfyui_widget{suffix}.png"
    browser.screenshot(str(closeup),
                       clip={"x": near["x"], "y": near["y"], "width": near["width"], "height": near["height"], "scale": 2})
    stats = browser.evaluate(f"({CANVAS_STATS_JS})(document.querySelector('canvas.scalingar-plot'))")
    assert stats["colored"] > 1000, stats  # redrawn sharp at the new zoom and ratio

    # Cache hit: reload the workflow (fresh nodes, empty plots) and queue the same prompt again. Nothing
    # runs, so no live events come; the plot must be redrawn from the cached UI output alone.
    browser.evaluate(f"{APP}.loadGraphData({json.dumps(workflow)}, true, true, 'toy_shapes_scalingar')", timeout=60)
    fresh = browser.evaluate(SAMPLERS_JS)
    assert all(x["data"]["final"] != "1" for x in fresh), fresh
    browser.evaluate(f"{APP}.queuePrompt(0, 1)", timeout=60)
    cached = browser.wait_for(done_js, timeout=120, interval=0.3)
    assert "error" not in cached, cached
    for s in cached["ok"]:
        assert s["data"]["events"] == "0" and s["data"]["drawn"] == "1", s

    errors = [m for m in browser.console_messages()
              if m.startswith(("exception", "console.error")) and "scalingar" in m.lower()]
    assert not errors, errors
    if os.environ.get("SCALINGAR_UPDATE_SCREENSHOT", "") not in ("", "0"):
        DOCS.mkdir(exist_ok=True)
        for artifact, doc in DOCS_COPIES.items():
            if (artifacts / artifact).is_file() and (artifact.endswith(f"{suffix}.png") if suffix else
                                                     not artifact.endswith("_vue.png")):
                shutil.copyfile(artifacts / artifact, DOCS / doc)
                # what it shows, so tests/test_readme_pictures.py can tell when it is stale
                readme_pictures.stamp(DOCS / doc, readme_pictures.screenshot_sources(doc),
                                      "SCALINGAR_UPDATE_SCREENSHOT=1 .scratch/comfyui/venv/bin/python -m pytest "
                                      "tests/browser/test_comfyui_widget.py")
    print(f"{mode}: server start {comfy_server.startup_seconds:.1f}s, UI load {load_s:.1f}s, run {run_s:.1f}s, "
          f"events {watch['steps']}")
