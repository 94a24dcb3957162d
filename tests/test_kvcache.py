"""The disk KV prefix cache with the real embedded Gemma through the real pipeline: greedy answers must be the
same with the cache off, with llama.cpp's in-memory prefix reuse, and after restoring the prefix from disk in a
new generator. Store mechanics (LRU, atomic writes, corrupt entries) are checked on small byte strings."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatqa import ChatQA
from chatqa.config import load_profile
from chatqa.kvcache import MAGIC, KVStore, kv_root
from tests.conftest import ROOT, SAMPLE

Q1 = "Who was the chief engineer of the canal?"
Q2 = "Who first proposed a canal through the vale?"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of every path on a ~3.3K-token document with SmolLM2 (full attention: the disk store is used;
    sliding-window models such as the default Gemma bypass it, see the test at the end)."""
    home = tmp_path_factory.mktemp("kv-home")
    text = SAMPLE.read_text(encoding="utf-8")
    doc = home / "harrow_part.txt"
    doc.write_text(text[: text.rfind("\n\n", 0, 15000)], encoding="utf-8")
    config = load_profile("smollm2").replace(home=str(home))
    out: dict = {"home": home}

    def ask(qa: ChatQA, question: str) -> tuple:
        start = time.perf_counter()
        ans = qa.ask(question, docs=[doc], mode="long", max_new_tokens=24)
        return ans, qa.generator.kv_event, time.perf_counter() - start

    first = ChatQA(config)  # miss: evaluates the prefix alone, stores it, then the question
    out["q1_miss"] = ask(first, Q1)
    out["q2_memory"] = ask(first, Q2)  # the prefix is still in llama.cpp's memory: no disk involved
    first.close()
    second = ChatQA(config)  # a new generator: the prefix comes from disk
    out["q2_disk"] = ask(second, Q2)
    out["q1_after_disk"] = ask(second, Q1)
    second.close()
    from chatqa.generation import load_generator

    cold = ChatQA(config, generator=load_generator(config.generator))  # no state_dir: no store, a full recompute
    out["q2_cold"] = ask(cold, Q2)
    cold.close()
    out["entries"] = KVStore(kv_root(config)).entries()
    return out


def test_greedy_answers_are_identical_with_cache_off_in_memory_and_restored(scenario: dict) -> None:
    answers = {name: scenario[name][0].answer for name in ("q2_cold", "q2_memory", "q2_disk")}
    assert len(set(answers.values())) == 1, answers
    assert scenario["q1_miss"][0].answer == scenario["q1_after_disk"][0].answer


def test_restored_run_reports_cached_tokens_and_skips_the_prefix(scenario: dict) -> None:
    miss, hit = scenario["q1_miss"], scenario["q2_disk"]
    assert miss[1]["event"] == "miss" and miss[1]["stored"] and miss[0].usage["cached_tokens"] == 0
    assert scenario["q2_memory"][1] is None and scenario["q2_memory"][0].usage["cached_tokens"] > 3000
    assert hit[1]["event"] == "hit" and hit[0].usage["cached_tokens"] == hit[1]["tokens"] >= 3072
    # the whole prefix (less the safety tokens) is restored, not the multiple of the batch size below it: every read
    # of the prompt breaks its batches at the prefix's end, so a restored run evaluates a cold run's batches
    assert hit[1]["tokens"] == miss[1]["tokens"] and hit[1]["tokens"] % 512 != 0
    assert hit[0].usage["prompt_tokens"] - hit[1]["tokens"] < 64  # only the question's tokens were read
    cold_prefill = scenario["q2_cold"][0].usage["seconds"]["prefill"]
    assert hit[0].usage["seconds"]["prefill"] < cold_prefill / 2
    print(
        f"\nKV timings: state {miss[1]['bytes'] / 1e6:.1f} MB for {miss[1]['tokens']} tokens; prefix eval "
        f"{miss[1]['eval_s']:.2f}s, save {miss[1]['save_s']:.3f}s, restore {hit[1]['restore_s']:.3f}s; "
        f"prefill cold {cold_prefill:.2f}s vs restored {hit[0].usage['seconds']['prefill']:.2f}s; decode "
        + ", ".join(f"{k} {scenario[k][0].usage['seconds']['decode']:.2f}s" for k in ("q2_cold", "q2_disk"))
    )


def test_store_keeps_state_and_ids_but_not_the_logits_buffer(scenario: dict) -> None:
    (entry,) = scenario["entries"]
    assert entry.tokens == scenario["q1_miss"][1]["tokens"] and entry.model.startswith("SmolLM2")
    assert entry.bytes < 100e6  # LlamaState would add its logits buffer: 512 x 49,152 floats (100 MB) here
    assert not list(entry.path.parent.glob(".*.tmp"))


def test_cache_ls_and_clear_commands(scenario: dict) -> None:
    env = {**os.environ, "CHATQA_HOME": str(scenario["home"])}

    def run(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "chatqa.cli", "cache", *args, "--json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    listed = run("ls")
    assert len(listed["entries"]) == 1 and listed["max_bytes"] == 4 * 1024**3
    assert listed["entries"][0]["tokens"] >= 3072 and listed["total_bytes"] == listed["entries"][0]["bytes"]
    cleared = run("clear")
    assert cleared["removed"] == 1 and cleared["freed_bytes"] == listed["total_bytes"]
    assert run("ls")["entries"] == []


def _put(store: KVStore, name: str, size: int = 1000) -> str:
    key = store.key({"test": name}, [1, 2, 3])
    store.put(key, [1, 2, 3], bytes(size), {"model": name})
    return key


def test_lru_eviction_with_a_tiny_cap(tmp_path: Path) -> None:
    earlier = KVStore(tmp_path, max_bytes=3500)  # another process, before this one
    keys = [_put(earlier, name) for name in ("a", "b", "c")]
    for i, key in enumerate(keys):  # distinct, increasing last-use times
        os.utime(earlier.path(key), (1000 + i, 1000 + i))
    store = KVStore(tmp_path, max_bytes=3500)
    assert store.get(keys[0], [1, 2, 3]) is not None  # touching "a" makes "b" the least recently used
    _put(store, "d")
    left = {e.model for e in store.entries()}
    assert left == {"a", "c", "d"} and store.total_bytes() <= 3500


def test_a_store_never_evicts_its_own_entries_a_second_scan_reuses_the_first_ones(tmp_path: Path, capsys) -> None:
    """Map-reduce stores sections in document order and reads them back in the same order. Under plain LRU a
    book bigger than the cap evicts each section just before the next question needs it (nothing is ever
    reused); a store keeps what it wrote or restored, skips the rest with one notice, and the next process
    restores the first sections."""
    sections = [f"s{i}" for i in range(6)]
    first = KVStore(tmp_path, max_bytes=3500)  # room for three entries of ~1,100 bytes
    stored = [first.put(first.key({"s": n}, [1]), [1], bytes(1000), {"model": n}) for n in sections]
    assert [p is not None for p in stored] == [True, True, True, False, False, False]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CHATQA_KV_MAX_BYTES" in err  # one notice, not one per section
    second = KVStore(tmp_path, max_bytes=3500)  # the next question, in a new process
    hits = [second.get(second.key({"s": n}, [1]), [1]) is not None for n in sections]
    for n in sections:  # its misses try to store again and must not evict the sections it just reused
        if second.get(second.key({"s": n}, [1]), [1]) is None:
            second.put(second.key({"s": n}, [1]), [1], bytes(1000), {"model": n})
    assert hits == [True, True, True, False, False, False]
    assert {e.model for e in second.entries()} == {"s0", "s1", "s2"}


def test_atomic_write_leaves_no_temp_file_and_no_partial_entry(tmp_path: Path, monkeypatch) -> None:
    store = KVStore(tmp_path, max_bytes=10**6)

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        _put(store, "x")
    assert not [p for p in tmp_path.iterdir() if p.name != ".lock"]


def test_corrupt_or_foreign_entries_are_misses(tmp_path: Path) -> None:
    store = KVStore(tmp_path, max_bytes=10**6)
    key = _put(store, "x")
    assert store.get(key, [1, 2, 4]) is None  # same key, other tokens (a hash collision): never restored
    store.path(key).write_bytes(store.path(key).read_bytes()[:-10])
    assert store.get(key) is None and not store.path(key).exists()
    assert KVStore(tmp_path, max_bytes=0).put(key, [1], b"x", {}) is None  # CHATQA_KV_MAX_BYTES=0: off


def test_sliding_window_models_keep_prefixes_in_memory_only(qa, tmp_path) -> None:
    """Gemma 3 (sliding-window attention): a restored disk state changed a greedy answer, so it is not stored."""
    gen = qa.generator
    assert not gen.disk_state_exact and gen.kv_store is not None
    text = SAMPLE.read_text(encoding="utf-8")
    doc = tmp_path / "part.txt"
    doc.write_text(text[: text.rfind("\n\n", 0, 6000)], encoding="utf-8")
    qa.ask(Q1, docs=[doc], mode="long", max_new_tokens=8)
    assert gen.kv_event is None and gen.kv_store.entries() == []
    again = qa.ask(Q2, docs=[doc], mode="long", max_new_tokens=8)
    assert again.usage["cached_tokens"] >= 1024  # the in-memory prefix is still reused


# -- issue 11, item 2: a damaged entry is never restored; a damaged header never breaks ls/clear ---------------
def _damage(path: Path, every: int = 256 * 1024, span: int = 8 * 1024) -> None:
    """What the issue's probe did: overwrite 8 KiB every 256 KiB of the file, keeping its size."""
    data = bytearray(path.read_bytes())
    size = len(data)
    for at in range(4096, size, every):
        data[at : at + span] = os.urandom(len(data[at : at + span]))
    assert len(data) == size
    path.write_bytes(bytes(data))


def test_a_damaged_state_of_the_same_size_is_a_miss_deleted_and_said_once(tmp_path: Path, capsys) -> None:
    store = KVStore(tmp_path, max_bytes=10**8)
    ids = list(range(2000))
    key = store.key({"test": "damaged"}, ids)
    store.put(key, ids, os.urandom(2 * 1024 * 1024), {"model": "m"})
    assert store.get(key, ids) is not None  # intact: a hit
    _damage(store.path(key))
    assert store.get(key, ids) is None
    assert not store.path(key).exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum" in err and key[:12] in err


def test_one_flipped_byte_in_the_token_ids_is_a_miss(tmp_path: Path) -> None:
    store = KVStore(tmp_path, max_bytes=10**8)
    ids = list(range(100))
    key = store.key({"test": "ids"}, ids)
    store.put(key, ids, b"state" * 100, {"model": "m"})
    data = bytearray(store.path(key).read_bytes())
    data[-len(b"state" * 100) - 4] ^= 1  # inside the last token id
    store.path(key).write_bytes(bytes(data))
    assert store.get(key) is None


def _write_headerless(path: Path, header: dict) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(raw)) + raw + b"\x00" * 64)


def test_a_header_missing_a_field_does_not_break_ls_or_clear(tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = kv_root(load_profile("default").replace(home=str(home)))
    root.mkdir(parents=True)
    store = KVStore(root, max_bytes=10**8)
    good = _put(store, "good")
    _write_headerless(root / f"{'b' * 64}.kv", {"model": "no tokens field"})
    _write_headerless(root / f"{'c' * 64}.kv", {"tokens": "many", "state_bytes": None})
    (root / f"{'d' * 64}.kv").write_bytes(b"not a chatqa entry at all")
    assert {e.key for e in store.entries()} == {good, "b" * 64, "c" * 64, "d" * 64}
    assert store.get("b" * 64) is None  # a broken header is a miss, never a crash
    env = {**os.environ, "CHATQA_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chatqa.cli", "cache", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    listed = run("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["entries"]
    assert len(rows) == 3 and sum(r["damaged"] for r in rows) == 2  # "b" was deleted by the get above
    text = run("ls")
    assert text.returncode == 0 and "damaged" in text.stdout, text.stderr
    cleared = run("clear", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["removed"] == 3 and not list(root.glob("*.kv"))
