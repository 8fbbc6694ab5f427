"""What the pack's error messages share: how user input is echoed, and the numerical failure of a run.

User errors are ``ValueError`` (a bad setting, name or file) or ``OSError`` (a path); front ends show their
message as it is. :class:`NonFiniteError` says that the model itself produced no usable number.
"""
from __future__ import annotations

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
