"""Shared fixtures for the headless-Chromium tests.

Without Chromium these tests are skipped, unless SCALINGAR_REQUIRE_BROWSER=1
(CI sets it) turns the missing browser into a failure.
"""

from __future__ import annotations

import functools
import http.server
import pathlib
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from browser_support import ARTIFACTS, REPO, StaticHandler, require_browser  # noqa: E402
from chromium_cdp import Browser, find_chromium  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "comfyui: starts a real ComfyUI server (needs scripts/comfyui/setup.sh)")


@pytest.fixture(scope="session")
def chromium_path():
    path = find_chromium()
    if not path:
        msg = "Chromium not found: install it with `apt-get install -y chromium` (or set CHROMIUM=...)"
        if require_browser():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def browser(chromium_path):
    b = Browser(chromium_path, width=1280, height=800)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def static_server():
    """Serve the repository root on a free localhost port."""
    handler = functools.partial(StaticHandler, directory=str(REPO))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
