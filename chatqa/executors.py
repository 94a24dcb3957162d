"""Where batch work runs: one seam, two implementations.

A batch (``chatqa batch``, ``chatqa eval run``) is a list of :class:`Work` items, each a picklable payload with
a routing ``key`` (its document set) and optionally a ``shared`` object (the documents themselves) common to
every item with that key. An executor runs ``task(qa, item, shared)`` for each and yields an :class:`Outcome`
as each finishes; the caller, in the driver process, is the only one that writes results, so resume and
atomic writes work the same whatever runs the tasks.

- :class:`LocalExecutor`: this process, one loaded :class:`~chatqa.pipeline.ChatQA`, items grouped by key so
  the index and the KV state of a document prefix are reused from one question to the next.
- :class:`RayExecutor`: Ray actors, each holding one loaded ChatQA (models load once per actor, not per task).
  Items are routed to actors by key, so each actor keeps its own documents warm; an idle actor steals from the
  tail of the longest queue, so one big document does not leave the others idle. A killed actor is restarted
  by Ray and its task retried; if that fails too, the item is re-queued on another actor once, and only then
  reported as failed (the caller writes an error row, which a resume fills).
"""

from __future__ import annotations

import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatqa.errors import ChatQAError, ConfigError

EXECUTORS = ("local", "ray")
Task = Callable[[Any, Any, Any], Any]  # (qa, item, shared) -> result; a module-level function (pickled by name)


@dataclass(frozen=True)
class Work:
    key: str  # items with the same key share documents: they go to the same worker, one after another
    item: Any
    shared: Any = None  # the same object for every item of a key (shipped to a Ray worker once per key)


@dataclass
class Outcome:
    work: Work
    result: Any = None
    error: str | None = None  # set when the task could not run at all (a worker died twice); result is then None
    seconds: float = 0.0  # time inside the task, as the worker measured it
    worker: int = 0


@dataclass
class Stats:
    """What running cost beyond the tasks themselves: how a Ray run's overhead is measured."""

    workers: int = 1
    items: int = 0
    startup_s: float = 0.0  # starting or joining a cluster and loading the models in every worker
    wall_s: float = 0.0  # from the first item handed out to the last result received
    task_s: float = 0.0  # sum of the time spent inside tasks
    overhead_s: float = 0.0  # per worker: its span minus its task time, summed (dispatch, transfer, idle)
    retried: int = 0  # items re-queued after a worker died
    failed: int = 0
    per_worker: list[dict[str, float]] = field(default_factory=list)

    @property
    def overhead_per_item_s(self) -> float:
        return self.overhead_s / self.items if self.items else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("workers", "items", "retried", "failed")}
        for k in ("startup_s", "wall_s", "task_s", "overhead_s", "overhead_per_item_s"):
            out[k] = round(getattr(self, k), 4)
        out["per_worker"] = self.per_worker
        return out


def grouped(works: Sequence[Work]) -> list[Work]:
    """Items of one key together, keys in order of first appearance, items in their given order."""
    order: dict[str, list[Work]] = {}
    for w in works:
        order.setdefault(w.key, []).append(w)
    return [w for group in order.values() for w in group]


class Executor(ABC):
    stats: Stats

    @abstractmethod
    def run(self, task: Task, works: Sequence[Work]) -> Iterator[Outcome]:
        """Yield one outcome per item, as each finishes (not necessarily in the given order)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers; the executor cannot run again afterwards."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Today's single process: the given ChatQA answers every item, one document set after another."""

    def __init__(self, qa: Any) -> None:
        self.qa = qa
        self.stats = Stats()

    def run(self, task: Task, works: Sequence[Work]) -> Iterator[Outcome]:
        self.stats = Stats(items=0)
        start = time.perf_counter()
        for w in grouped(works):
            t0 = time.perf_counter()
            result = task(self.qa, w.item, w.shared)
            seconds = time.perf_counter() - t0
            self.stats.items += 1
            self.stats.task_s += seconds
            self.stats.wall_s = time.perf_counter() - start
            yield Outcome(w, result, None, seconds, 0)
        self.stats.overhead_s = max(0.0, self.stats.wall_s - self.stats.task_s)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'chatqa[ray]'") from None
    return ray


class _Worker:
    """One Ray actor: a loaded ChatQA that answers items for as long as the batch runs."""

    def __init__(self, config: Any, threads: int) -> None:
        from chatqa.pipeline import ChatQA

        try:
            import torch

            torch.set_num_threads(threads)  # the retriever's share of this worker's CPUs
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        self.qa = ChatQA(config)

    def ready(self, load_embedder: bool) -> dict[str, Any]:
        """Load the models now, so no item's time includes them; report where this worker lives."""
        import socket

        start = time.perf_counter()
        _ = self.qa.generator
        if load_embedder:
            _ = self.qa.embedder
        return {"pid": os.getpid(), "host": socket.gethostname(), "load_s": time.perf_counter() - start}

    def run(self, task: Task, item: Any, shared: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        result = task(self.qa, item, shared)
        return result, time.perf_counter() - start


class RayExecutor(Executor):
    """Work sharded over Ray actors, each holding one ChatQA built from ``config``.

    ``address`` joins a running cluster (else ``RAY_ADDRESS``; else a local cluster is started with exactly
    ``workers * cpus_per_worker`` CPUs). Each worker's llama.cpp and torch threads are its CPUs, unless the
    profile sets ``generator.threads``."""

    def __init__(
        self,
        config: Any,
        *,
        workers: int = 2,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        address: str | None = None,
        load_embedder: bool = True,
        inflight: int = 2,
    ) -> None:
        if workers < 1:
            raise ConfigError("--workers must be at least 1")
        if cpus_per_worker <= 0 or gpus_per_worker < 0:
            raise ConfigError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")
        ray = import_ray()
        self.ray = ray
        start = time.perf_counter()
        address = address or os.environ.get("RAY_ADDRESS") or None
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            _init_ray(ray, address, workers, cpus_per_worker, gpus_per_worker)
        _check_resources(ray, workers, cpus_per_worker, gpus_per_worker)
        threads = max(1, int(cpus_per_worker))
        if config.generator.threads is None:
            config = config.replace(**{"generator.threads": threads})
        actor = ray.remote(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=1, max_task_retries=1,
            scheduling_strategy="SPREAD",  # one actor per node when they fit: each talks to its node's server
        )(_Worker)  # fmt: skip
        self.actors = [actor.remote(config, threads) for _ in range(workers)]
        try:
            self.info = ray.get([a.ready.remote(load_embedder) for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            raise ChatQAError(f"a Ray worker failed to start: {_one_line(exc)}") from None
        self.inflight = max(1, inflight)
        self.stats = Stats(workers=workers, startup_s=time.perf_counter() - start)

    def worker_pids(self) -> list[int]:
        """Process ids of the workers as they started (a fault-injection test kills one)."""
        return [i["pid"] for i in self.info]

    def run(self, task: Task, works: Sequence[Work]) -> Iterator[Outcome]:
        ray = self.ray
        n = len(self.actors)
        queues = _assign(grouped(works), n)
        alive = [True] * n
        attempts: dict[int, int] = {}
        shared_refs: dict[int, Any] = {}
        pending: dict[Any, tuple[int, int, Work]] = {}  # ref -> (worker, item number, work)
        first_sent = [0.0] * n
        last_done = [0.0] * n
        busy = [0.0] * n
        done = [0] * n
        startup = self.stats.startup_s
        self.stats = Stats(workers=n, startup_s=startup)
        task_ref = ray.put(task)
        start = time.perf_counter()

        def submit(i: int) -> None:
            while sum(1 for wi, _, _ in pending.values() if wi == i) < self.inflight:
                if not queues[i]:
                    donor = max((j for j in range(n) if j != i), key=lambda j: len(queues[j]), default=None)
                    if donor is None or not queues[donor]:
                        return
                    queues[i].append(queues[donor].pop())  # steal from the tail: the donor keeps its warm head
                no, w = queues[i].popleft()
                if id(w.shared) not in shared_refs:  # once per shared object (a document set), not per item
                    shared_refs[id(w.shared)] = ray.put(w.shared)
                if not first_sent[i]:
                    first_sent[i] = time.perf_counter()
                pending[self.actors[i].run.remote(task_ref, w.item, shared_refs[id(w.shared)])] = (i, no, w)

        for i in range(n):
            submit(i)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            i, no, w = pending.pop(ref)
            try:
                result, seconds = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died and Ray's retry failed too
                alive[i] = False
                attempts[no] = attempts.get(no, 0) + 1
                living = [j for j in range(n) if alive[j]]
                if attempts[no] < 2 and living:
                    self.stats.retried += 1
                    target = min(living, key=lambda j: len(queues[j]))
                    queues[target].appendleft((no, w))
                    for back_no, back in _drain(queues, i):  # the dead worker's queue moves too
                        queues[target].append((back_no, back))
                    submit(target)
                    continue
                self.stats.failed += 1
                yield Outcome(w, None, f"worker died: {_one_line(exc)}", 0.0, i)
                continue
            except ray.exceptions.RayError as exc:  # the task raised, or its result could not be sent back
                self.stats.failed += 1
                yield Outcome(w, None, _one_line(exc), 0.0, i)
            else:
                last_done[i] = time.perf_counter()
                busy[i] += seconds
                done[i] += 1
                self.stats.items += 1
                self.stats.task_s += seconds
                yield Outcome(w, result, None, seconds, i)
            if alive[i]:
                submit(i)
        self.stats.wall_s = time.perf_counter() - start
        spans = [max(0.0, last_done[i] - first_sent[i]) if done[i] else 0.0 for i in range(n)]
        self.stats.overhead_s = sum(max(0.0, spans[i] - busy[i]) for i in range(n))
        self.stats.per_worker = [{"items": done[i], "task_s": round(busy[i], 4), "span_s": round(spans[i], 4)}
                                 for i in range(n)]  # fmt: skip

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(a)
        self.actors = []
        if self._owns_cluster and self.ray.is_initialized():
            self.ray.shutdown()


def _assign(works: list[Work], n: int) -> list[deque[tuple[int, Work]]]:
    """Whole key groups to workers, largest first onto the least loaded (LPT): a document's questions stay on
    one worker unless stealing moves the tail of a queue later."""
    groups: dict[str, list[tuple[int, Work]]] = {}
    for no, w in enumerate(works):
        groups.setdefault(w.key, []).append((no, w))
    queues: list[deque[tuple[int, Work]]] = [deque() for _ in range(n)]
    load = [0] * n
    for group in sorted(groups.values(), key=len, reverse=True):
        i = min(range(n), key=lambda j: load[j])
        queues[i].extend(group)
        load[i] += len(group)
    return queues


def _drain(queues: list[deque[tuple[int, Work]]], i: int) -> list[tuple[int, Work]]:
    out = list(queues[i])
    queues[i].clear()
    return out


def _init_ray(ray: Any, address: str | None, workers: int, cpus: float, gpus: float) -> None:
    import logging

    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    else:  # a private local cluster sized to the workers, running this checkout's code
        import chatqa

        root = os.path.dirname(os.path.dirname(os.path.abspath(chatqa.__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = {k: v for k, v in os.environ.items() if k.startswith("CHATQA_")}  # same homes, caches, KV limits
        env.update(PYTHONPATH=path, CHATQA_QUIET="1")
        kwargs.update(num_cpus=max(1, int(round(workers * cpus))), num_gpus=int(round(workers * gpus)),
                      object_store_memory=256 * 2**20, runtime_env={"env_vars": env})  # fmt: skip
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot start or join the Ray cluster{f' at {address}' if address else ''}: "
                          f"{_one_line(exc)}") from None  # fmt: skip


def _check_resources(ray: Any, workers: int, cpus: float, gpus: float) -> None:
    """Actors that do not fit wait forever in Ray; say so before creating them."""
    have = ray.cluster_resources()
    need = {"CPU": workers * cpus, "GPU": workers * gpus}
    short = [f"{need[r]:g} {r}s (it has {have.get(r, 0):g})" for r in need if need[r] > have.get(r, 0) + 1e-9]
    if short:
        raise ConfigError(f"the Ray cluster is too small: {workers} worker(s) need {' and '.join(short)}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__


def make_executor(name: str, qa: Any, **ray_options: Any) -> Executor:
    """``local`` reuses ``qa``; ``ray`` builds one ChatQA per actor from ``qa.config``."""
    if name == "local":
        return LocalExecutor(qa)
    if name == "ray":
        return RayExecutor(qa.config, **ray_options)
    raise ConfigError(f"unknown executor '{name}' (choose from {', '.join(EXECUTORS)})")
