"""Options that choose where batch work runs (``chatqa batch``, ``chatqa eval run``), defined once."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatqa.errors import ConfigError

ExecutorName = Annotated[str, typer.Option("--executor", help="where questions run: local (this process) or ray")]
Workers = Annotated[int | None, typer.Option("--workers", help="ray: actors, each holding one model [default: 2]")]
CpusPerWorker = Annotated[
    float | None, typer.Option("--cpus-per-worker", help="ray: CPUs (and llama.cpp threads) per actor [default: 1]")
]
GpusPerWorker = Annotated[float | None, typer.Option("--gpus-per-worker", help="ray: GPUs per actor [default: 0]")]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", envvar="RAY_ADDRESS", help="ray: join this cluster (default: start a local one)"),
]


def make(name: str, qa: Any, workers: int | None, cpus: float | None, gpus: float | None, address: str | None,
         load_embedder: bool = True) -> Any:  # fmt: skip
    """The executor a command asked for; Ray options without ``--executor ray`` are a mistake worth naming."""
    from chatqa.executors import EXECUTORS, LocalExecutor, RayExecutor

    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}' (choose from {', '.join(EXECUTORS)})")
    if name == "local":
        if (workers, cpus, gpus) != (None, None, None):
            raise ConfigError("--workers, --cpus-per-worker and --gpus-per-worker apply to --executor ray")
        return LocalExecutor(qa)
    workers = 2 if workers is None else workers
    cpus = 1 if cpus is None else cpus
    return RayExecutor(qa.config, workers=workers, cpus_per_worker=cpus, gpus_per_worker=gpus or 0, address=address,
                       load_embedder=load_embedder)  # fmt: skip
