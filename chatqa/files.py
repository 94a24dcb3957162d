"""Atomic file writes: the one way chatqa replaces a result, report or evidence file.

Why: a run killed mid-write (Ctrl-C, OOM, a full disk) must leave the previous file whole, never half of a new
one that a later resume or report would read as truth. The data goes to a temporary file beside the target
(same filesystem, so the rename is atomic), is flushed to disk, and is renamed over the target.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) or leave it untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
