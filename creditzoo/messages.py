"""How error messages show what the user gave: whole when short, cut with an ellipsis when long.

An error line names the value it refuses; a 10,000-character prompt or path echoed whole buries the line (and
fills a terminal). :func:`shown` is the one way a message quotes user input; :func:`cut_long_values` is the
last net for messages built elsewhere (the command line applies it to every error line).
"""

from __future__ import annotations

import re

SHOWN_CHARS = 80
"""The most characters of one echoed value an error line shows (its start and its end; quotes and ellipsis not
counted)."""

ELLIPSIS = "…"

_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, its text cut to ``limit`` characters with an ellipsis.

    Args:
        value: what the user gave (a string is quoted, as ``repr`` quotes it).
        limit: the most characters of the value to show.

    Returns:
        e.g. ``'a red circle'``, or ``'a red circle a red … red circle' (10400 characters)`` for a long one.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        quoted = repr(_cut(value, limit))  # quoted as repr quotes it: '...' or "..."
        return f"{quoted} ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{_cut(text, limit)} ({len(text)} characters)"


def _cut(text: str, limit: int) -> str:
    """``limit`` characters of ``text``: its first three quarters and last quarter around an ellipsis.

    A prompt keeps its start, a path its file name.
    """
    tail = limit // 4
    return f"{text[: limit - tail]}{ELLIPSIS}{text[len(text) - tail :]}"


def cut_long_values(message: str, limit: int = SHOWN_CHARS) -> str:
    """Cut every quoted value longer than ``limit`` characters in ``message``, and the message to one line.

    The net under messages that quote a value whole (a library's, or one this package builds without
    :func:`shown`): ``unknown model 'sdxl:xxxx…xxxx' (20005 characters)``. Unquoted text is kept, so lists of
    valid choices stay whole.

    Args:
        message: an error message.
        limit: the most characters of one quoted value to keep.

    Returns:
        The first line of ``message`` with its long quoted values cut.
    """
    line = message.splitlines()[0] if message else message

    def cut(match: re.Match[str]) -> str:
        text = match.group(0)
        quote, inner = text[0], text[1:-1]
        if len(inner) <= limit:
            return text
        return f"{quote}{_cut(inner, limit)}{quote} ({len(inner)} characters)"

    line = _QUOTED.sub(cut, line)
    if len(line) > 20 * limit:  # an unquoted value (a list of 10,000 words): keep the start and say so
        line = f"{line[: 4 * limit]}{ELLIPSIS} ({len(line)} characters)"
    return line
