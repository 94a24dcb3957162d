"""Hostile but realistic use, end to end through the CLI (issue 11): each probe is what a user tried, and the
assertion is what must happen instead of a traceback, a hang or a silent wrong answer.

Every command runs as a user runs it (``python -m chatqa.cli ...`` in a scratch working directory, with its own
``CHATQA_HOME``). Most probes are rejected before any model loads; those that build an index load the two small
embedded models; the last three generate (a damaged KV state through ``ask`` with SmolLM2, whose full attention
makes disk states exact; a PDF's citations line and two eval runs into one folder with Gemma 270M). Item 1
(threads sharing one ChatQA) is a library property, tested in tests/test_threads.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import docmaker
from tests.conftest import ROOT, SAMPLE
from tests.test_index import read_only

PROBE_TIMEOUT = 300


@pytest.fixture
def cli(tmp_path: Path):
    """Run ``chatqa`` in a scratch working directory holding a private file that must never be read."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "private.txt").write_text("PRIVATE-SECRET-42 must never be indexed")
    env = {**os.environ, "CHATQA_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "CHATQA_QUIET": "1"}

    def run(*args: str, stdin: str | None = None, timeout: float = PROBE_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chatqa.cli", *args], cwd=work, env=env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    run.work, run.home, run.env = work, tmp_path / "home" / "indexes", env  # type: ignore[attr-defined]
    return run


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """The contract for bad input: exit 2, one ``chatqa: error:`` line naming the problem, nothing on stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("chatqa: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def notices(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("chatqa: notice: ")]


# -- item 9: an empty path is not the working directory ---------------------------------------------------------
def test_empty_doc_paths_are_refused(cli) -> None:
    one_line_error(cli("ask", "--doc", "", "what is the secret?"), "empty path")
    one_line_error(cli("index", "--doc", ""), "empty path")
    assert not cli.home.exists() or "PRIVATE" not in "".join(p.read_text() for p in cli.home.rglob("chunks.jsonl"))


def test_library_refuses_empty_paths_and_bytes() -> None:
    from chatqa import ChatQA
    from chatqa.errors import InputError

    qa = ChatQA()
    with pytest.raises(InputError, match="empty path"):
        qa.documents("")
    with pytest.raises(TypeError, match="not bytes"):
        qa.documents(b"some text")


# -- item 10: encodings, non-regular files --------------------------------------------------------------------
def test_a_fifo_is_refused_at_once(cli) -> None:
    fifo = cli.work / "pipe.txt"
    os.mkfifo(fifo)
    start = time.perf_counter()
    one_line_error(cli("ask", "--doc", str(fifo), "anything?", timeout=60), "not a regular file")
    one_line_error(cli("index", "--doc", "/dev/zero", timeout=60), "not a regular file")
    assert time.perf_counter() - start < 60


# -- items 10 and 11: text in other encodings, HTML, DOCX and PDF become the right text ------------------------
def test_utf16_latin1_html_docx_pdf_are_indexed_as_their_text(cli) -> None:
    w = cli.work
    (w / "wide.txt").write_bytes("Caf\u00e9 menu: the lock keeper's soup.\n".encode("utf-16"))
    (w / "old.txt").write_bytes("Cr\u00e8me of the towpath, written in latin-1.\n".encode("latin-1"))
    html_truth, boilerplate = docmaker.make_html(w / "page.html")
    docmaker.make_docx(w / "manual.docx")
    docmaker.make_pdf(w / "report.pdf", pages=3)
    names = ["wide.txt", "old.txt", "page.html", "manual.docx", "report.pdf"]
    proc = cli("index", *[a for n in names for a in ("--doc", n)], "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["documents"] == names
    assert notices(proc) == [n for n in notices(proc) if "latin-1" in n] and len(notices(proc)) == 1
    chunks = [json.loads(line) for line in (Path(out["path"]) / "chunks.jsonl").read_text().splitlines()]
    text = {n: "".join(c["text"] for c in chunks if c["doc_name"] == n) for n in names}
    assert "Caf\u00e9 menu" in text["wide.txt"] and "Cr\u00e8me" in text["old.txt"]
    assert "<p>" not in text["page.html"] and not [b for b in boilerplate if b in text["page.html"]]
    assert "Harrowmouth | 9" in text["manual.docx"]
    pdf = [c for c in chunks if c["doc_name"] == "report.pdf"]
    assert pdf[0]["pages"][0] == 1 and pdf[-1]["pages"][1] == 3 and "endobj" not in text["report.pdf"]


def test_a_scanned_pdf_is_a_clear_error(cli) -> None:
    docmaker.make_scanned_pdf(cli.work / "scan.pdf")
    one_line_error(cli("index", "--doc", "scan.pdf"), "no text layer")


# -- item 8: a document with no BM25 term ---------------------------------------------------------------------
def test_a_document_of_digits_and_signs_is_indexed_dense_only(cli) -> None:
    proc = cli("index", "--doc", "-", "--json", stdin="1 2 3 - + =\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["chunks"] == 1
    assert [n for n in notices(proc) if "BM25 is off" in n]


# -- item 3: a damaged index is rebuilt; a read-only home is usable; killed builds leave nothing ------------------
def test_damaged_index_read_only_home_and_leftovers(cli) -> None:
    doc = cli.work / "canal.txt"
    doc.write_text(SAMPLE.read_text(encoding="utf-8")[:12000], encoding="utf-8")
    first = cli("index", "--doc", "canal.txt", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    folder = Path(json.loads(first.stdout)["path"])

    faiss_file = folder / "vectors.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:1000])  # truncated: a RuntimeError on every ask before
    (cli.home / f".tmp-{folder.name}-killed").mkdir()  # what a build killed while writing leaves
    again = cli("index", "--doc", "canal.txt", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["built"], again.stderr[-2000:]
    assert len(notices(again)) == 1 and "damaged" in notices(again)[0] and "rebuilding" in notices(again)[0]
    assert not [p for p in cli.home.iterdir() if p.name.startswith((".tmp-", ".old-"))]

    chunks = folder / "chunks.jsonl"
    chunks.write_text(chunks.read_text().replace("canal", "kanal", 1))  # a forged citation text, same size
    forged = cli("index", "--doc", "canal.txt", "--json")
    assert forged.returncode == 0 and json.loads(forged.stdout)["built"], forged.stderr[-2000:]
    assert "kanal" not in chunks.read_text() and "checksum mismatch" in forged.stderr

    with read_only(cli.home):
        reused = cli("index", "--doc", "canal.txt", "--json")
        assert reused.returncode == 0, reused.stderr[-2000:]
        assert not json.loads(reused.stdout)["built"] and reused.stderr == ""
    (folder / "owners.npy").write_bytes(b"junk")
    with read_only(cli.home):
        one_line_error(cli("index", "--doc", "canal.txt"), "read-only", "damaged")


# -- item 4 (index half): a long build stops cleanly on Ctrl-C ------------------------------------------------
def _ctrl_c_delivered() -> None:
    """In the child: SIGINT back to its default. A test suite started in the background (``cmd &``, nohup, some
    CI runners) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt, as a user's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_and_exit_130(cli) -> None:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen([sys.executable, "-m", "chatqa.cli", "index", "--doc", "-"], cwd=cli.work, env=cli.env,
                            text=True, preexec_fn=_ctrl_c_delivered, **pipes)  # fmt: skip
    time.sleep(6)  # imported, waiting for the document on stdin
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (130, "", "chatqa: interrupted\n")


def _building(indexes: Path) -> bool:
    """True once an index build has taken its lock (before chunking and embedding; the file stays)."""
    return indexes.is_dir() and any(p.name.endswith(".lock") for p in indexes.iterdir())


def test_an_interrupted_index_build_stops_cleanly_and_keeps_the_old_index(cli) -> None:
    novel = cli.work / "long.txt"
    # ~750K tokens: minutes to embed on a busy 2-core box and still ~2 min on a quiet fast one (CI embedded
    # 125K tokens in 19 s and finished before a fixed 20 s sleep). Interrupt once the build is under way (it holds
    # its lock), inside the embedding, where a half-written index is what is at stake.
    novel.write_text(SAMPLE.read_text(encoding="utf-8") * 72, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "chatqa.cli", "index", "--doc", "long.txt"], cwd=cli.work,
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_delivered)  # fmt: skip
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not _building(cli.home):
        time.sleep(0.5)
    time.sleep(10)  # past loading the retriever: inside the embedding
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().endswith("chatqa: interrupted") and "Traceback" not in err, err
    assert not [p for p in cli.home.iterdir() if not p.name.endswith(".lock")]  # nothing half-written


# -- item 2: the KV cache ------------------------------------------------------------------------------------
def test_kv_cache_ls_and_clear_survive_damaged_headers(cli) -> None:
    from chatqa.kvcache import MAGIC

    root = cli.home / "kv"
    root.mkdir(parents=True)
    head = json.dumps({"model": "x"}).encode()
    (root / f"{'a' * 64}.kv").write_bytes(MAGIC + len(head).to_bytes(4, "little") + head + b"\0" * 32)
    (root / f"{'b' * 64}.kv").write_bytes(b"junk")
    listed = cli("cache", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [e["damaged"] for e in json.loads(listed.stdout)["entries"]] == [True, True]
    cleared = cli("cache", "clear", "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["removed"] == 2, cleared.stderr
    assert not list(root.glob("*.kv"))


# -- item 12 (eval score) -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [('["a list"]\n', "JSON object"), ('{"prediction": null, "ground_truth": "1"}\n', "null"), ("", "no rows")],
)
def test_eval_score_bad_prediction_files(cli, content: str, message: str) -> None:
    preds = cli.work / "preds"
    preds.mkdir()
    (preds / "preds_passkey.jsonl").write_text(content)
    one_line_error(cli("eval", "score", "--preds", str(preds)), message)


# -- items 5 and 6: profiles are validated in one place, and a working directory cannot plant one ---------------
@pytest.mark.parametrize(
    ("yaml_text", "args", "words"),
    [
        ("- a\n- b\n", (), ("expected a mapping",)),
        ("retrieval:\n  top_k: five\n", (), ("retrieval.top_k", "five")),
        ("generator:\n  context_window: big\n", (), ("generator.context_window",)),
        ("chunking:\n  chunk_tokens: '800'\n", (), ("chunking.chunk_tokens",)),
        ("name: p\n", ("--chunk-tokens", "0"), ("chunking.chunk_tokens", "--chunk-tokens")),
        ("name: p\n", ("--max-new-tokens", "1000000000"), ("answer budget", "--max-new-tokens")),
    ],
)
def test_bad_profiles_and_options_are_one_line(
    cli, yaml_text: str, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    (cli.work / "p.yaml").write_text(yaml_text)
    (cli.work / "doc.txt").write_text(SAMPLE.read_text(encoding="utf-8"))
    one_line_error(cli("ask", "--profile", "p.yaml", "--doc", "doc.txt", *args, "Who?"), *words)


def test_a_planted_profile_is_ignored_and_cannot_read_secrets(cli) -> None:
    """A cloned repository's configs/default.yaml must not replace the shipped default, and a profile named by
    path may not send an arbitrary secret variable to its base_url."""
    planted = cli.work / "configs"
    planted.mkdir()
    planted_yaml = (
        "name: default\ngenerator:\n  backend: openai\n  model: x\n"
        "  base_url: http://127.0.0.1:9/v1\n  api_key_env: AWS_SECRET_ACCESS_KEY\n"
    )
    (planted / "default.yaml").write_text(planted_yaml)
    info = cli("info", "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert str(planted) not in data["profile"] and data["generator"].startswith("llamacpp"), data
    (cli.work / "doc.txt").write_text("The canal opened in 1794.\n")
    env_secret = {**cli.env, "AWS_SECRET_ACCESS_KEY": "do-not-send"}
    proc = subprocess.run([sys.executable, "-m", "chatqa.cli", "ask", "--profile", "configs/default.yaml", "--doc",
                           "doc.txt", "When?"], cwd=cli.work, env=env_secret, capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT)  # fmt: skip
    one_line_error(proc, "api_key_env", "AWS_SECRET_ACCESS_KEY")


# -- item 4: a document far larger than the window is refused at once, not tokenized whole ----------------------
def test_long_mode_on_a_huge_document_refuses_from_an_estimate(cli) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    (cli.work / "big.txt").write_text("\n\n".join([text] * 60), encoding="utf-8")  # about 2.8 MB
    one_line_error(cli("ask", "--mode", "long", "--doc", "big.txt", "Who?"), "estimated", "--mode rag")
    # The refusal needs a tokenizer, nothing else: libraries that cost seconds to import are never loaded.
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatqa.cli", "ask", "--mode", "long", "--doc",
                             "big.txt", "Who?"], cwd=cli.work, env=cli.env, capture_output=True, text=True,
                            timeout=PROBE_TIMEOUT)  # fmt: skip
    assert traced.returncode == 2, traced.stderr[-2000:]
    lines = [line for line in traced.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[-1].strip() for line in lines}
    assert "chatqa.pipeline" in modules and "llama_cpp" in modules  # the trace is real: the tokenizer was loaded
    heavy = {"torch", "transformers", "sentence_transformers", "faiss", "langchain_text_splitters", "bm25s"}
    assert not heavy & modules, sorted(heavy & modules)


# -- probes that generate: what the unit tests check, seen through the CLI as a user runs it ---------------------
def test_a_damaged_kv_entry_through_ask_is_one_notice_and_the_same_answer(cli) -> None:
    """Item 2: patched bytes in a stored prefix state (same size) were a silent garbage answer. SmolLM2 has full
    attention, so its prefixes go to the disk store (Gemma's sliding window keeps them in memory only)."""
    from chatqa.kvcache import KVStore

    text = SAMPLE.read_text(encoding="utf-8")
    (cli.work / "canal.txt").write_text(text[: text.rfind("\n\n", 0, 7000)], encoding="utf-8")  # ~1.6K tokens
    args = ("ask", "--profile", "smollm2", "--mode", "long", "--max-new-tokens", "16", "--doc", "canal.txt",
            "--json", "Who was the chief engineer of the canal?")  # fmt: skip
    first = cli(*args)
    assert first.returncode == 0 and first.stderr == "", first.stderr[-2000:]
    (entry,) = list((cli.home / "kv").glob("*.kv"))
    data = bytearray(entry.read_bytes())
    for at in range(len(data) // 4, len(data), 256 * 1024):  # 8 KiB every 256 KiB of the state, as in the issue
        data[at : at + 8192] = bytes(len(data[at : at + 8192]))  # never past the end: the size must stay the same
    assert len(data) == entry.stat().st_size
    damaged = bytes(data)
    entry.write_bytes(damaged)

    second = cli(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    said = notices(second)
    assert len(said) == 1 and second.stderr == said[0] + "\n", second.stderr
    assert "KV cache entry" in said[0] and entry.stem[:12] in said[0] and "checksum mismatch" in said[0]
    assert json.loads(second.stdout)["answer"] == json.loads(first.stdout)["answer"]
    assert entry.read_bytes() != damaged and KVStore(entry.parent).get(entry.stem) is not None  # stored anew

    third = cli(*args)  # the rewritten entry is a verified hit: the prefix is not recomputed
    assert third.returncode == 0 and third.stderr == "", third.stderr[-2000:]
    out = json.loads(third.stdout)
    assert out["answer"] == json.loads(first.stdout)["answer"] and out["usage"]["cached_tokens"] >= 1024


def test_a_pdf_answer_cites_its_pages(cli) -> None:
    """Items 10 and 11 through ``ask``: the citations line names the page the cited text is on."""
    import re

    pages = docmaker.make_pdf(cli.work / "report.pdf", pages=4)
    assert "Assembly Rooms" in pages[3] and not [p for p in pages[:3] if "Assembly Rooms" in p]
    proc = cli("ask", "--profile", "gemma3-270m", "--mode", "rag", "--retrieval", "bm25", "--top-k", "1",
               "--max-new-tokens", "8", "--doc", "report.pdf",
               "Who took the chair at the meeting in the Harrowmouth Assembly Rooms?")  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("citations: ")]
    cited = re.fullmatch(r"citations: report\.pdf:\d+-\d+ p\. (\d)(?:-(\d))? \(chunk \d+\)", line)
    assert cited, line
    first, last = int(cited[1]), int(cited[2] or cited[1])
    assert 1 <= first <= 4 <= last <= 4, line  # the one chunk retrieved holds page 4's meeting


def test_two_eval_runs_into_one_folder_second_is_refused(cli) -> None:
    """Item 7: two ``eval run`` into one run folder duplicated every row. The folder is locked while a run writes:
    the second fails at once in one line naming the holder, and the first finishes with each row once. The first
    runs ten 1K-token samples (about 20 s), so the second reaches the lock well before it is released."""
    args = ["eval", "run", "--suite", "passkey", "--profile", "gemma3-270m", "--modes", "long", "--lengths", "1k",
            "--depths", "0,0.25,0.5,0.75,1", "--n", "2", "--out", "runs", "--json"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "chatqa.cli", *args], cwd=cli.work, env=cli.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        held = []
        while not held and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            held = [p for p in (cli.work / "runs").glob("passkey/*/.lock") if p.read_text().startswith("pid")]
        assert held, first.communicate(timeout=60)
        second = cli(*args)
        one_line_error(second, "in use by another `chatqa eval run`", f"pid {first.pid}", held[0].parent.name)
        out, err = first.communicate(timeout=PROBE_TIMEOUT)
    finally:
        first.kill()
    assert first.returncode == 0, err[-2000:]
    rows = [json.loads(line) for line in (held[0].parent / "rows.jsonl").read_text().splitlines()]
    keys = [(r["id"], r["mode"]) for r in rows]
    assert len(keys) == 10 and len(set(keys)) == 10, keys
