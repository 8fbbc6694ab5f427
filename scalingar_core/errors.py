"""What the pack's error messages share: how user input is echoed, and the numerical failure of a run.

User errors are ``ValueError`` (a bad setting, name or file) or ``OSError`` (a path); front ends show their
message as it is. :class:`NonFiniteError` (the model produced no usable number), :class:`RunAborted` (a
worker died) and :class:`OutputError` (a full disk or a permission failure while writing) end a run that was
set up correctly. Command-line exit status: 0 done, 1 the run failed, 2 bad input, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM, handled like Ctrl-C).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable

ECHO_LIMIT = 200  # characters of user input an error message repeats (a pasted novel must not flood it)


def echo(value, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long the original was."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"<{type(value).__name__} too large to show>"
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}... ({size})"


class NonFiniteError(RuntimeError):
    """Every trajectory's logits (or confidence) became NaN or infinite: no image can be chosen."""


class RunAborted(RuntimeError):
    """A run stopped before it finished (a worker process died); nothing partial was written."""


class OutputError(RuntimeError):
    """Writing a run's results failed after the run started (a full disk, a permission change); the message
    names the file and says which files, if any, are new."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so the same clean-up runs (temporary files go)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held():
    """Inside the block SIGINT and SIGTERM only are noted; the first one acts as soon as the block ends. For
    steps that must not be cut in half, such as moving a run's files into place (tens of milliseconds).
    (Python handlers, not a thread's signal mask: another thread would receive a masked signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])  # handled now as it would have been: KeyboardInterrupt, Terminated


def exit_status(command: Callable[[], int]) -> int:
    """Run a command-line command: an expected failure is one ``error: ...`` message on stderr, never a
    traceback (bad input: status 2; a failed run: 1; Ctrl-C: 130; SIGTERM: 143)."""
    try:
        with sigterm_as_interrupt():
            return command()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (NonFiniteError, RunAborted, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated (SIGTERM): files being written were left as they were (no partial file)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: files being written were left as they were (no partial file)", file=sys.stderr)
        return 130
