"""A model loading on its own thread while the caller goes on with other work.

Why: a second question on an already indexed document, asked in a new process, spent about half of its
10 s importing sentence-transformers (torch, transformers, scikit-learn) and loading MiniLM, only to embed
one query, while the generator load, the plan and the index check waited their turn. Those need no part of the
retriever, and llama.cpp releases the GIL while it loads (ctypes), so on two cores both go at once.

The thread is not a daemon, so a library caller's interpreter waits for an unused load at exit rather than
finalising while the thread is inside a C++ extension's initialisation (torch). The chatqa program itself ends
with ``os._exit`` (chatqa.cli.leave), which stops the thread with the process; nothing it does writes a file.
The planner starts a load only when the request will most likely need it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class Preload(Generic[T]):
    """``load()`` running on a thread from construction on; :meth:`result` waits for it and returns what it
    returned, or raises what it raised (in the caller's thread, as if the caller had loaded it)."""

    def __init__(self, load: Callable[[], T], name: str) -> None:
        self._future: Future[T] = Future()
        self._thread = threading.Thread(target=self._run, args=(load,), name=f"chatqa-preload-{name}")
        self._thread.start()

    def _run(self, load: Callable[[], T]) -> None:
        try:
            self._future.set_result(load())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._future.set_exception(exc)

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> T:
        return self._future.result()
