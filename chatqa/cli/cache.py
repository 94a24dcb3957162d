"""``chatqa cache ls|clear``: see and free the disk KV prefix cache (it can grow to gigabytes by design)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer

from chatqa.cli._app import Json, Profile, app

if TYPE_CHECKING:  # pragma: no cover
    from chatqa.kvcache import KVStore

cache = typer.Typer(help="list or clear the disk cache of document KV states", no_args_is_help=True)
app.add_typer(cache, name="cache")


def _store(profile: str) -> KVStore:
    from chatqa.config import load_profile
    from chatqa.kvcache import KVStore, kv_root

    return KVStore(kv_root(load_profile(profile)))


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MB"


@cache.command("ls")
def ls(profile: Profile = "default", json_out: Json = False) -> None:
    """Entries with size, tokens, model, last use; total vs cap."""
    store = _store(profile)
    entries = store.entries()
    total = sum(e.bytes for e in entries)
    rows: list[dict[str, Any]] = [
        {
            "key": e.key,
            "bytes": e.bytes,
            "tokens": e.tokens,
            "model": e.model,
            "last_used": e.last_used,
            "damaged": e.damaged,
        }
        for e in entries
    ]
    if json_out:
        print(json.dumps({"root": str(store.root.resolve()), "entries": rows, "total_bytes": total,
                          "max_bytes": store.max_bytes}))  # fmt: skip
        return
    count = f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}"
    print(f"{store.root.resolve()}: {count}, {_gib(total)} of the {_gib(store.max_bytes)} cap")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"]))
        if r["damaged"]:
            print(f"  {r['key'][:12]}  {_gib(r['bytes']):>10}  damaged: unreadable, `chatqa cache clear` removes it")
            continue
        print(f"  {r['key'][:12]}  {_gib(r['bytes']):>10}  {r['tokens']:>7,} tokens  {r['model']}  last used {when}")


@cache.command("clear")
def clear(profile: Profile = "default", json_out: Json = False) -> None:
    """Delete all entries."""
    store = _store(profile)
    n = len(store.entries())
    freed = store.clear()
    if json_out:
        print(json.dumps({"root": str(store.root.resolve()), "removed": n, "freed_bytes": freed}))
    else:
        print(f"removed {n} entr{'y' if n == 1 else 'ies'} ({_gib(freed)}) from {store.root.resolve()}")
