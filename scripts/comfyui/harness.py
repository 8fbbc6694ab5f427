"""Start and drive a real ComfyUI server with this pack installed (for tests and screenshots).

Needs the ComfyUI built by scripts/comfyui/setup.sh. Standard library only, so any Python can drive it.

    python scripts/comfyui/harness.py start [--port P] [--workdir DIR]   # prints JSON {url, port, pid, log, workdir}
    python scripts/comfyui/harness.py stop --workdir DIR                 # stops the server started there

In Python::

    from harness import ComfyServer            # sys.path += scripts/comfyui
    with ComfyServer() as server:              # fresh base directory under .scratch/, free port
        server.get("/object_info")
        prompt_id = server.queue(api_prompt, client_id)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ScalingAR"


def comfyui_home() -> Path:
    return Path(os.environ.get("COMFYUI_HOME", REPO / ".scratch" / "comfyui"))


def is_set_up(home: Path | None = None) -> bool:
    home = home or comfyui_home()
    return (home / ".ok").is_file() and (home / "ComfyUI" / "main.py").is_file() and \
        (home / "venv" / "bin" / "python").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process on 127.0.0.1 with its own base directory (models, output, user, custom_nodes).

    The pack is linked into ``<workdir>/custom_nodes/ScalingAR`` so ComfyUI imports it from this checkout
    and serves ``web/`` at ``/extensions/ScalingAR/`` and ``workflows/`` as templates.
    """

    def __init__(self, workdir: str | Path | None = None, port: int | None = None, home: Path | None = None,
                 extra_args: list[str] | None = None, startup_timeout: float = 180.0):
        self.home = home or comfyui_home()
        if not is_set_up(self.home):
            raise RuntimeError(f"no ComfyUI in {self.home}: run `bash scripts/comfyui/setup.sh` first")
        self.own_workdir = workdir is None
        if workdir is None:
            (REPO / ".scratch").mkdir(exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="comfy-run-", dir=REPO / ".scratch")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "comfyui.log"
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ComfyServer":
        nodes_dir = self.workdir / "custom_nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        link = nodes_dir / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        cmd = [str(self.home / "venv" / "bin" / "python"), str(self.home / "ComfyUI" / "main.py"),
               "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
               "--base-directory", str(self.workdir), "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        # One intra-op thread unless told otherwise: on a small shared machine torch's thread pool spins
        # against other processes (a tiny linear layer went from 30 us to 8 ms with 2 threads here).
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        env.setdefault("OMP_NUM_THREADS", os.environ.get("SCALINGAR_COMFY_THREADS", "1"))
        started = time.monotonic()
        log = open(self.log_path, "ab")
        # Its own process group so stop() ends ComfyUI and nothing else; nice: the machine is shared.
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=lambda: os.nice(5))
        log.close()
        (self.workdir / "server.json").write_text(json.dumps(self.info()))
        while time.monotonic() - started < self.startup_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up; see {self.log_path}"
                                   f":\n{self.log()[-3000:]}")
            try:
                self.get("/system_stats", timeout=2)
                self.startup_seconds = time.monotonic() - started
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.startup_timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def info(self) -> dict:
        return {"url": self.url, "port": self.port, "pid": self.proc.pid if self.proc else None,
                "log": str(self.log_path), "workdir": str(self.workdir)}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body=None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def get(self, path: str, timeout: float = 30):
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body!r:.500}")
        return body

    def queue(self, prompt: dict, client_id: str | None = None) -> tuple[int, dict]:
        """POST /prompt; returns (status, body). 200 with prompt_id, or 400 with node_errors."""
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id or str(uuid.uuid4())})

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    def history(self, prompt_id: str) -> dict | None:
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def wait_history(self, prompt_id: str, timeout: float = 300) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            entry = self.history(prompt_id)  # present once the prompt finished, failed or was interrupted
            if entry:
                return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    if args.action == "start":
        server = ComfyServer(workdir=args.workdir, port=args.port).start()
        print(json.dumps(dict(server.info(), startup_seconds=round(server.startup_seconds, 1))))
        return 0
    if not args.workdir:
        parser.error("stop needs --workdir (the one start printed)")
    info = json.loads((Path(args.workdir) / "server.json").read_text())
    try:
        os.killpg(info["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
