"""Text from files shown on a terminal: tensor, input and model names come from files anyone can write.

:func:`safe` escapes what a terminal would act on (ANSI escape sequences, other control characters, bidi
overrides) so a name can neither move the cursor, recolour or hide text, nor forge lines of trtkit's output.
"""

from __future__ import annotations

__all__ = ["safe", "safe_lines"]

def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: object) -> str:
    """``text`` with control, format (bidi) and other non-printable characters escaped as ``\\xNN`` /
    ``\\uNNNN``; printable Unicode (``é``, ``名前``) is kept. Backslashes are doubled only when something was
    escaped, so plain names print unchanged."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


def safe_lines(text: object) -> str:
    """:func:`safe` applied to each line of ``text``, keeping its line breaks."""
    return "\n".join(safe(line) for line in str(text).split("\n"))
