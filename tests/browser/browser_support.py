"""Helpers shared by the headless-Chromium tests (imported by conftest.py and the test modules;
named uniquely so it never clashes with another folder's conftest)."""

from __future__ import annotations

import http.server
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

# Page-side function: for a canvas (or selector), count the strongly coloured pixels
# (trajectory hues), the near-white ones (θ, halo, text) and all that differ from the
# background (its top-left pixel).
CANVAS_STATS_JS = r"""
(sel) => {
  const c = typeof sel === 'string' ? document.querySelector(sel) : sel;
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let colored = 0, bright = 0, nonBg = 0;
  const [br, bg, bb] = [d[0], d[1], d[2]];  // top-left pixel is background
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], g = d[i + 1], b = d[i + 2];
    const chroma = Math.max(r, g, b) - Math.min(r, g, b);
    if (chroma > 60) colored++;
    if (r > 200 && g > 200 && b > 200) bright++;
    if (Math.abs(r - br) + Math.abs(g - bg) + Math.abs(b - bb) > 30) nonBg++;
  }
  return { width: c.width, height: c.height, colored, bright, nonBg };
}
"""


def require_browser() -> bool:
    return os.environ.get("SCALINGAR_REQUIRE_BROWSER", "") not in ("", "0")


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    # Python 3.11's table lacks .mjs; browsers refuse modules served as text/plain.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript"}

    # Mimic ComfyUI's URL layout for the widget harness: the pack's web/ under
    # /extensions/ScalingAR/, and mock app/api shims under /scripts/.
    routes = {
        "/extensions/ScalingAR/": REPO / "web",
        "/scripts/": REPO / "tests" / "browser" / "mock_comfy" / "scripts",
    }

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in self.routes.items():
            if clean.startswith(prefix):
                return str(folder / clean[len(prefix):])
        return super().translate_path(path)

    def log_message(self, *args):  # keep test output quiet
        pass
