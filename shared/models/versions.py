"""Model version numbers as the suite writes them: what Triton and the registry know."""

from __future__ import annotations

# Triton's model versions are int64.
MAX_VERSION_DIGITS = 19


def ascii_digits(text: str) -> bool:
    """True when ``text`` is one or more of the ASCII digits 0-9.

    What to check input with before ``int()``: ``str.isdigit`` also accepts "²" (which
    ``int()`` refuses: an INTERNAL error instead of INVALID_ARGUMENT) and "٣" or "３" (which
    ``int()`` reads as 3, a version spelt unlike the one Triton and the registry know)."""
    return text.isascii() and text.isdigit()


def is_version_number(text: str) -> bool:
    """A version number: a positive integer of at most 19 ASCII digits."""
    return ascii_digits(text) and len(text) <= MAX_VERSION_DIGITS and int(text) > 0
