"""Per-token callback for the engine: cancel point, throttled progress bar and live events."""
from __future__ import annotations

import time

import comfy.model_management as mm
import comfy.utils

from scalingar_core.engine.trace import json_safe

EVENT = "scalingar.step"
PROGRESS_INTERVAL = 0.05  # s: at most 20 progress-bar updates a second (each one is two websocket messages)
EVENT_INTERVAL = 0.2  # s: live plot updates


class Throttle:
    """Says yes to the first call, to the last one, and otherwise at most once per ``interval`` seconds."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last_time = None

    def due(self, now: float, last: bool = False) -> bool:
        if last or self.last_time is None or now - self.last_time >= self.interval:
            self.last_time = now
            return True
        return False


def prompt_server():
    try:
        from server import PromptServer
    except ImportError:  # running outside a ComfyUI server (fast tests, scripts)
        return None
    return getattr(PromptServer, "instance", None)


class StepReporter:
    """``callback(event)`` for :func:`scalingar_core.engine.loop.generate`.

    Every token: the interrupt check (raising aborts generation: the cancel point). At most every
    ``progress_interval`` seconds, and on the first and last token: the progress bar (ComfyUI sends a
    ``progress`` and a ``progress_state`` message per update; per token that was 2048 messages for a 512 px
    image at N = 8). At most every ``interval`` seconds, and on the first and last token: ``scalingar.step``
    with ``event.snapshot()`` plus the node id, to the client that queued the prompt.
    """

    def __init__(self, node_id, prompt_id=None, interval: float = EVENT_INTERVAL, server=None,
                 clock=time.monotonic, progress_interval: float = PROGRESS_INTERVAL):
        self.node_id, self.prompt_id, self.clock = node_id, prompt_id, clock
        self.server = server if server is not None else prompt_server()
        self.bar = None
        self.ticks, self.events = Throttle(progress_interval), Throttle(interval)
        self.sent = 0

    def __call__(self, event) -> None:
        mm.throw_exception_if_processing_interrupted()
        now = self.clock()
        last = event.step + 1 >= event.total
        if self.ticks.due(now, last):
            if self.bar is None:
                self.bar = comfy.utils.ProgressBar(event.total, node_id=self.node_id)
            self.bar.update_absolute(event.step + 1, event.total)
        if self.events.due(now, last):
            self.send(event.snapshot())

    def send(self, snapshot: dict) -> None:
        payload = json_safe(dict(snapshot, node=str(self.node_id)))
        if self.prompt_id is not None:
            payload["prompt_id"] = self.prompt_id
        self.sent += 1
        if self.server is not None:
            self.server.send_sync(EVENT, payload, getattr(self.server, "client_id", None))
