"""Per-token callback for the engine: ComfyUI progress bar, cancel point, throttled live events."""
from __future__ import annotations

import math
import time

import comfy.model_management as mm
import comfy.utils

EVENT = "scalingar.step"


def _server():
    try:
        from server import PromptServer
    except ImportError:  # running outside a ComfyUI server (fast tests, scripts)
        return None
    return getattr(PromptServer, "instance", None)


class StepReporter:
    """``callback(event)`` for :func:`scalingar_core.sampler.generate`.

    Every token: one progress tick and the interrupt check (raising aborts generation: the cancel point).
    Every ``interval`` seconds and on the last token: ``scalingar.step`` with ``event.snapshot()`` plus the
    node id, to the client that queued the prompt.
    """

    def __init__(self, node_id, prompt_id=None, interval: float = 0.2, server=None, clock=time.monotonic):
        self.node_id, self.prompt_id, self.interval, self.clock = node_id, prompt_id, interval, clock
        self.server = server if server is not None else _server()
        self.bar = None
        self.last_sent = None
        self.sent = 0

    def __call__(self, event) -> None:
        mm.throw_exception_if_processing_interrupted()
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(event.total, node_id=self.node_id)
        self.bar.update_absolute(event.step + 1, event.total)
        now = self.clock()
        last = event.step + 1 >= event.total
        if last or self.last_sent is None or now - self.last_sent >= self.interval:
            self.last_sent = now
            self.send(event.snapshot())

    def send(self, snapshot: dict) -> None:
        payload = json_safe(dict(snapshot, node=str(self.node_id)))
        if self.prompt_id is not None:
            payload["prompt_id"] = self.prompt_id
        self.sent += 1
        if self.server is not None:
            self.server.send_sync(EVENT, payload, getattr(self.server, "client_id", None))


def json_safe(value):
    """NaN/inf -> None: the browser's JSON.parse rejects the bare NaN that Python's json writes."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
