"""``chatqa cache ls|clear``: see and free the disk KV prefix cache (it can grow to gigabytes by design)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from chatqa.config import load_profile
from chatqa.kvcache import KVStore, kv_root


def _store(args: argparse.Namespace) -> KVStore:
    return KVStore(kv_root(load_profile(args.profile)))


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MB"


def cmd_cache(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.cache_command == "clear":
        n = len(store.entries())
        freed = store.clear()
        if args.json:
            print(json.dumps({"root": str(store.root.resolve()), "removed": n, "freed_bytes": freed}))
        else:
            print(f"removed {n} entr{'y' if n == 1 else 'ies'} ({_gib(freed)}) from {store.root.resolve()}")
        return 0
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
    if args.json:
        print(json.dumps({"root": str(store.root.resolve()), "entries": rows, "total_bytes": total,
                          "max_bytes": store.max_bytes}))  # fmt: skip
        return 0
    count = f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}"
    print(f"{store.root.resolve()}: {count}, {_gib(total)} of the {_gib(store.max_bytes)} cap")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"]))
        if r["damaged"]:
            print(f"  {r['key'][:12]}  {_gib(r['bytes']):>10}  damaged: unreadable, `chatqa cache clear` removes it")
            continue
        print(f"  {r['key'][:12]}  {_gib(r['bytes']):>10}  {r['tokens']:>7,} tokens  {r['model']}  last used {when}")
    return 0


def register(sub: argparse._SubParsersAction, extra: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    cache = sub.add_parser("cache", help="list or clear the disk cache of document KV states")
    inner = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, text in (("ls", "entries with size, tokens, model, last use; total vs cap"), ("clear", "delete all")):
        p = inner.add_parser(name, help=text)
        p.add_argument("--profile", default="default", help="profile name or YAML path (for its home folder)")
        p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    extra["cache"] = cmd_cache
