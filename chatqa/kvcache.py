"""KV prefix cache on disk: llama.cpp states of long document prefixes, reused across processes.

Re-reading a 32K-token document costs minutes on a CPU while restoring its state takes well under a second, so
a new session (or a new ``chatqa ask`` process) on a known document should only pay for the question. Each entry
holds the llama.cpp context state and the exact token ids it covers, keyed by the sha256 of everything that
changes the numbers (model file, window, RoPE, attention kernel, token ids). llama-cpp-python's ``LlamaState``
also copies a logits buffer (512 x vocab floats, 512 MB for Gemma) that a prefix never needs: it is not kept.
Writes are atomic (temp file + ``os.replace``) under a file lock; the total size is capped with least-recently
used eviction (a hit touches the file's mtime). ``CHATQA_KV_MAX_BYTES=0`` turns the store off.

A store never evicts an entry that it (this process) wrote or restored itself: map-reduce stores every section
of a book in document order and reads them back in the same order, and under plain LRU a book larger than the
cap would evict each section just before the next question needs it, so nothing would ever be reused. When the
cap is full of this process's own entries, further prefixes are not stored (one notice): a book over the cap
keeps its first sections rather than none.

A restored state is trusted blindly by llama.cpp: a few damaged bytes in it give garbage answers with no error.
Each entry therefore carries an xxh3-128 checksum of its token ids and state, verified on every load (about
10 GB/s, so 15 ms for a 140 MB state); a mismatch deletes the entry, says so once, and the prefix is recomputed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from filelock import FileLock

from chatqa.config import Config
from chatqa.notices import notice

MAGIC = b"CHATQAKV2\n"  # v2 added the checksum: v1 entries cannot be verified, so they are misses
SUFFIX = ".kv"
DEFAULT_MAX_BYTES = 4 * 1024**3


def default_max_bytes() -> int:
    """The size cap: ``CHATQA_KV_MAX_BYTES`` when set (0 disables the store), else 4 GiB."""
    env = os.environ.get("CHATQA_KV_MAX_BYTES", "").strip()
    return int(float(env)) if env else DEFAULT_MAX_BYTES


def kv_root(config: Config) -> Path:
    """``<indexes>/kv``: next to the indexes, so one CHATQA_HOME (or profile ``home``) holds all derived state
    and nothing lands in the working directory outside ``indexes/``."""
    return config.index_home / "kv"


@dataclass
class KVEntry:
    key: str
    path: Path
    bytes: int
    tokens: int
    model: str
    last_used: float
    ids: list[int] | None = None
    state: memoryview | None = None  # the llama.cpp state, a view into the file's bytes (no extra copy)
    damaged: bool = False  # listed so that ``cache ls`` shows it and ``cache clear`` counts it; never restored


class KVStore:
    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self._mine: set[Path] = set()  # entries this store wrote or restored: never evicted by its own writes
        self.skipped = 0  # puts refused because only this store's own entries could have made room

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"))

    @staticmethod
    def key(fingerprint: dict[str, Any], ids: Sequence[int]) -> str:
        h = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode("utf-8"))
        h.update(np.asarray(ids, dtype="<i4").tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def get(self, key: str, ids: Sequence[int] | None = None) -> KVEntry | None:
        """The entry with its state, touched as most recently used; None when absent, unreadable or (when
        ``ids`` is given) not for exactly these tokens."""
        path = self.path(key)
        if not self.enabled or not path.is_file():
            return None
        try:
            data = bytearray(path.read_bytes())
            entry = _parse(key, path, data, with_state=True)
        except (OSError, ValueError) as exc:
            path.unlink(missing_ok=True)  # a corrupt entry is only a miss, and must not stay one forever
            notice(f"KV cache entry {key[:12]} is damaged ({exc}): deleted, the prefix is recomputed")
            return None
        if ids is not None and entry.ids != list(ids):
            return None
        os.utime(path)
        self._mine.add(path)
        entry.last_used = time.time()
        return entry

    def put(self, key: str, ids: Sequence[int], state: bytes | memoryview, meta: dict[str, Any]) -> Path | None:
        """Write atomically, then evict least recently used entries beyond the cap; None when it cannot fit."""
        ids_raw = np.asarray(ids, dtype="<i4").tobytes()
        digest = _checksum(memoryview(ids_raw), memoryview(state).cast("B"))
        header = json.dumps({**meta, "tokens": len(ids), "state_bytes": len(state), "xxh3_128": digest,
                             "created": time.time()})  # fmt: skip
        head = MAGIC + struct.pack("<I", len(header)) + header.encode("utf-8")
        size = len(head) + len(ids_raw) + len(state)
        if not self.enabled or size > self.max_bytes:
            return None
        path = self.path(key)
        with self._lock():
            if not self._room(path, size):
                self.skipped += 1
                if self.skipped == 1:
                    notice(
                        f"KV cache is full ({self.max_bytes / 1024**3:.1f} GiB) of states this run stored or "
                        "reused: further prefixes are not stored; raise CHATQA_KV_MAX_BYTES to keep them all"
                    )
                return None
            tmp = self.root / f".{key}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as handle:
                    handle.write(head)
                    handle.write(ids_raw)
                    handle.write(state)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self._mine.add(path)
            self._evict(keep=path)
        return path

    def _sizes(self) -> dict[Path, int]:
        out = {}
        for p in self.root.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile by another process
                out[p] = p.stat().st_size
        return out

    def _room(self, path: Path, size: int) -> bool:
        """Whether ``size`` more bytes fit under the cap once every entry that is not this store's own is
        evicted (called under the lock)."""
        own = sum(n for p, n in self._sizes().items() if p in self._mine and p != path)
        return own + size <= self.max_bytes

    def _evict(self, keep: Path | None = None) -> list[Path]:
        """Least recently used first, never this store's own entries (see the module docstring)."""
        files = sorted(self.root.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        removed = []
        for p in files:
            if total <= self.max_bytes:
                break
            if p == keep or p in self._mine:
                continue
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
            removed.append(p)
        return removed

    def entries(self) -> list[KVEntry]:
        """All entries' metadata (headers only), most recently used first. An entry whose header cannot be
        read is listed as ``damaged`` rather than skipped or raised: ``cache clear`` is how users clean up."""
        out = []
        for p in self.root.glob(f"*{SUFFIX}") if self.root.is_dir() else []:
            try:
                with open(p, "rb") as handle:
                    head = handle.read(len(MAGIC) + 4)
                    (n,) = struct.unpack("<I", head[len(MAGIC) :]) if head.startswith(MAGIC) else (0,)
                    out.append(_parse(p.stem, p, bytearray(head + handle.read(n)), with_state=False))
            except (ValueError, struct.error):
                with contextlib.suppress(OSError):
                    st = p.stat()
                    out.append(KVEntry(p.stem, p, st.st_size, 0, "?", st.st_mtime, damaged=True))
            except OSError:  # removed meanwhile by another process
                continue
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    def clear(self) -> int:
        """Delete every entry (and stray temp files of crashed writers); returns the bytes freed."""
        if not self.root.is_dir():
            return 0
        freed = 0
        with self._lock():
            for p in [*self.root.glob(f"*{SUFFIX}"), *self.root.glob(".*.tmp")]:
                with contextlib.suppress(FileNotFoundError):
                    freed += p.stat().st_size
                    p.unlink()
        return freed


def _checksum(ids: memoryview, state: memoryview) -> str:
    h = xxhash.xxh3_128()
    h.update(ids)
    h.update(state)
    return h.hexdigest()


def _parse(key: str, path: Path, data: bytearray, with_state: bool) -> KVEntry:
    """Every way a file can be wrong (foreign, old format, header damaged or missing a field, truncated,
    bytes changed) is a ``ValueError`` here, so callers have one thing to handle."""
    if not data.startswith(MAGIC):
        raise ValueError("not a chatqa v2 KV entry")
    at = len(MAGIC)
    try:
        (n,) = struct.unpack_from("<I", data, at)
        meta = json.loads(bytes(data[at + 4 : at + 4 + n]).decode("utf-8"))
        tokens, state_bytes, digest = int(meta["tokens"]), int(meta["state_bytes"]), str(meta["xxh3_128"])
        model = str(meta.get("model", "?"))
    except (struct.error, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable header: {type(exc).__name__} {exc}") from None
    at += 4 + n
    st = path.stat()
    entry = KVEntry(key, path, st.st_size, tokens, model, st.st_mtime)
    if with_state:
        end = at + 4 * entry.tokens
        if len(data) != end + state_bytes:
            raise ValueError("truncated")
        view = memoryview(data)
        if _checksum(view[at:end], view[end:]) != digest:
            raise ValueError("checksum mismatch")
        entry.ids = np.frombuffer(bytes(data[at:end]), dtype="<i4").tolist()
        entry.state = view[end:]
    return entry


def save_llama_state(llm: Any) -> memoryview:
    """The context state alone (KV cells and the last logits row), without ``LlamaState``'s 512 MB copy.

    A view of the one buffer llama.cpp filled, not ``bytes``: copying it doubled peak memory while saving
    (a 32K-token Gemma state is about 0.6 GB)."""
    import llama_cpp

    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_get_size(ctx)
    buf = (ctypes.c_uint8 * size)()
    n = llama_cpp.llama_state_get_data(ctx, buf, size)
    return memoryview(buf).cast("B")[:n]


def load_llama_state(llm: Any, ids: Sequence[int], state: memoryview) -> bool:
    """Install a saved state and tell llama-cpp-python which tokens it holds, so ``generate(reset=True)``
    evaluates only the suffix; False (and a clean context) when llama.cpp refuses the bytes."""
    import llama_cpp

    n = len(state)
    buf = (ctypes.c_uint8 * n).from_buffer(state.obj, len(state.obj) - n) if n else None
    if not n or llama_cpp.llama_state_set_data(llm._ctx.ctx, buf, n) != n:
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        return False
    llm.input_ids[: len(ids)] = ids
    llm.n_tokens = len(ids)
    llm._requires_eval = True  # the restored logits belong to the prefix, never sample from them directly
    return True
