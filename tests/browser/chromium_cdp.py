"""Minimal Chrome DevTools Protocol client over --remote-debugging-pipe.

Drives Debian's headless Chromium with no extra packages: no websocket library,
no Playwright, no downloaded browser build. Chromium reads NUL-terminated JSON
commands on fd 3 and writes replies and events on fd 4.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

# Flags from the project's CI guidance; the background-networking ones stop
# Chromium from hammering the closed network at start-up.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
]


class CDPError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """Path of a Chromium binary: $CHROMIUM, then the usual Debian names."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process with a single page attached (flat session)."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900):
        exe = executable or find_chromium()
        if not exe:
            raise CDPError(
                "Chromium not found. Install Debian's package (`apt-get install -y chromium`) "
                "or set CHROMIUM=/path/to/chromium."
            )
        self.profile = tempfile.mkdtemp(prefix="scalingar-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, Chromium reads fd 3
        self._res_r, res_w = os.pipe()  # Chromium writes fd 4, we read

        def wire_fds():  # runs in the child before exec
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
            close_fds=True,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._next_id = 0
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self._stderr_tail: list[str] = []
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._stderr_loop, daemon=True).start()
        self.session = None
        self._attach(width, height)

    # ---------------------------------------------------------------- transport
    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._res_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    waiting = list(self._pending.values())
                for q in waiting:
                    q.put({"error": {"message": "Chromium closed the debugging pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._pending.pop(msg["id"], None)
                    if q:
                        q.put(msg)
                else:
                    self.events.append(msg)

    def _stderr_loop(self):
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr_tail = (self._stderr_tail + [line.decode("utf-8", "replace").rstrip()])[-40:]

    def send(self, method: str, params: dict | None = None, *, session: str | None = "page", timeout: float = 30.0):
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            q: queue.Queue = queue.Queue()
            self._pending[mid] = q
        msg = {"id": mid, "method": method, "params": params or {}}
        sid = self.session if session == "page" else session
        if sid:
            msg["sessionId"] = sid
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no reply from Chromium within {timeout:.0f}s") from None
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}\nchromium stderr:\n" + "\n".join(self._stderr_tail))
        return reply.get("result", {})

    def _attach(self, width: int, height: int):
        deadline = time.monotonic() + 30
        page = None
        while page is None:
            targets = self.send("Target.getTargets", session=None)["targetInfos"]
            page = next((t for t in targets if t["type"] == "page"), None)
            if page is None:
                if time.monotonic() > deadline:
                    raise CDPError("Chromium started but opened no page")
                time.sleep(0.1)
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, session=None)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # ---------------------------------------------------------------- page helpers
    def navigate(self, url: str, timeout: float = 60.0):
        self.send("Page.navigate", {"url": url}, timeout=timeout)
        self.wait_for("document.readyState === 'complete'", timeout=timeout)

    def add_init_script(self, source: str):
        """Run `source` in every new document before its own scripts (e.g. to seed localStorage)."""
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def evaluate(self, expression: str, timeout: float = 30.0):
        res = self.send("Runtime.evaluate",
                        {"expression": expression, "awaitPromise": True, "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"page script failed: {text}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.evaluate(expression)
            if last:
                return last
            time.sleep(interval)
        raise CDPError(f"timed out after {timeout:.0f}s waiting for: {expression} (last value {last!r})")

    def screenshot(self, path: str, clip: dict | None = None):
        params = {"format": "png", "captureBeyondViewport": False}
        if clip:
            params["clip"] = {**clip, "scale": clip.get("scale", 1)}
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def console_messages(self) -> list[str]:
        """Console output and uncaught exceptions seen so far, as text lines."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.consoleAPICalled":
                p = e["params"]
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.append(f"console.{p.get('type')}: {args}")
            elif e.get("method") == "Runtime.exceptionThrown":
                d = e["params"]["exceptionDetails"]
                out.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        return out

    def close(self):
        try:
            self.send("Browser.close", session=None, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
