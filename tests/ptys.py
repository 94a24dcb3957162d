"""Running the CLI as a person at a terminal sees it: stderr (and optionally stdout) on a pseudo-terminal, so
``isatty()`` is true and progress bars appear. Each pty is read on its own thread while the command runs, so a
chatty command never blocks on a full pty buffer."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


def drain(fd: int, into: list[bytes]) -> None:
    """Read ``fd`` until the other side closes (EIO on Linux, or end of file)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            return
        if not chunk:
            return
        into.append(chunk)


def run_on_terminal(cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
                    stdout_on_pty: bool = False) -> tuple[int, str, str]:  # fmt: skip
    """Run ``cmd`` with stderr on a pty (stdout too with ``stdout_on_pty``, else piped); returns (exit code,
    stdout, stderr) as text."""
    err_master, err_slave = pty.openpty()
    out_master, out_slave = pty.openpty() if stdout_on_pty else (None, None)
    seen: dict[str, list[bytes]] = {"out": [], "err": []}
    readers = [threading.Thread(target=drain, args=(err_master, seen["err"]))]
    if out_master is not None:
        readers.append(threading.Thread(target=drain, args=(out_master, seen["out"])))
    for r in readers:
        r.start()
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env), stderr=err_slave, timeout=timeout,
                              stdout=out_slave if out_slave is not None else subprocess.PIPE)  # fmt: skip
    finally:
        for fd in (err_slave, out_slave):
            if fd is not None:
                os.close(fd)
        for r in readers:
            r.join(timeout=30)
        for fd in (err_master, out_master):
            if fd is not None:
                os.close(fd)
    out = b"".join(seen["out"]) if out_master is not None else proc.stdout
    return proc.returncode, out.decode("utf-8", "replace"), b"".join(seen["err"]).decode("utf-8", "replace")
