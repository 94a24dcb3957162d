"""One-line notices on stderr: things the user should know that are not errors (a fallback taken, a damaged
cache entry recomputed, an index rebuilt).

Each distinct message is said once per process: a loop over a hundred questions on one latin-1 file must not
repeat the same line a hundred times. Notices never go to stdout, so ``--json`` output stays one object.
"""

from __future__ import annotations

import sys

_said: set[str] = set()


def notice(message: str) -> None:
    """Print ``chatqa: notice: <message>`` on stderr, unless this exact message was already printed."""
    if message in _said:
        return
    _said.add(message)
    print(f"chatqa: notice: {message}", file=sys.stderr, flush=True)
