"""Many questions, one output file that survives anything: ``chatqa batch``.

Questions come from JSONL (``question``, optional ``id``, ``docs``, ``messages``) or plain text (one question
per line). Each answer is one JSON line with the fields of ``chatqa ask --json`` plus ``id`` and ``error``,
appended and fsynced as it finishes, by the driver only, whatever executor answered it. A rerun skips the ids
already answered and retries the error rows, so a failed or killed batch is completed by running it again.

Questions are grouped by document set before they run: the index is built once per set, and the KV state of
a document prefix is reused from one long-context question to the next (each row's ``usage.cached_tokens``
says how many prompt tokens that saved, and the summary adds them up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatqa.errors import ChatQAError, InputError
from chatqa.executors import Executor, LocalExecutor, Work
from chatqa.files import write_atomic

ASK_OPTIONS = ("mode", "top_k", "retrieval", "truncate", "max_new_tokens")
ROW_FIELDS = ("answer", "route", "reason", "mode", "question", "citations", "usage", "attempts", "truncated")


@dataclass(frozen=True)
class Question:
    id: str
    question: str | None
    docs: tuple[str, ...]
    messages: tuple[dict[str, str], ...] | None = None


@dataclass
class BatchResult:
    out: Path
    total: int
    answered: int  # rows written by this call without an error
    errors: int  # error rows written by this call
    skipped: int  # ids found answered in the output file
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from a reused KV state (or the server's prefix cache)
    seconds: float = 0.0
    write_s: float = 0.0  # the driver's time writing and fsyncing rows: its share of each item's cost
    executor: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("total", "answered", "errors", "skipped", "prompt_tokens",
                                             "cached_tokens")}  # fmt: skip
        timing = {"seconds": round(self.seconds, 3), "write_s": round(self.write_s, 4)}
        return {"out": str(self.out), **out, **timing, "executor": self.executor}


def read_questions(path: str | Path, docs: Sequence[str] = ()) -> list[Question]:
    """Parse a questions file; every problem is one line naming the file and line number.

    ``docs`` (the command line's ``--doc``) applies to questions that name none of their own."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the questions ({getattr(exc, 'strerror', None) or exc})") from None
    lines = [(no, line.strip()) for no, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise InputError(f"{path}: no questions")
    jsonl = path.suffix.lower() in (".jsonl", ".json") or lines[0][1].startswith("{")
    out: list[Question] = []
    for no, line in lines:
        where = f"{path} line {no}"
        if not jsonl:
            out.append(Question(str(no), line, tuple(docs)))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object")
        question, messages = rec.get("question"), rec.get("messages")
        if question is not None and (not isinstance(question, str) or not question.strip()):
            raise InputError(f"{where}: 'question' must be a non-empty string")
        if messages is not None and not _valid_messages(messages):
            raise InputError(f"{where}: 'messages' must be a list of {{'role', 'content'}} turns")
        if question is None and not (messages and messages[-1]["role"] == "user"):
            raise InputError(f"{where}: needs a 'question' (or 'messages' ending with a user turn)")
        own = rec.get("docs")
        if isinstance(own, str):
            own = [own]
        if own is not None and (not isinstance(own, list) or not all(isinstance(d, str) for d in own)):
            raise InputError(f"{where}: 'docs' must be a path or a list of paths")
        qdocs = tuple(own) if own else tuple(docs)
        if not qdocs:
            raise InputError(f"{where}: no document (give --doc or a 'docs' field)")
        qid = rec.get("id", no)
        if not isinstance(qid, (str, int)):
            raise InputError(f"{where}: 'id' must be a string or a number")
        out.append(Question(str(qid), question, qdocs, tuple(messages) if messages else None))
    seen: set[str] = set()
    for q in out:
        if q.id in seen:
            raise InputError(f"{path}: id '{q.id}' appears twice; ids must be unique so a resume can skip them")
        seen.add(q.id)
    return out


def _valid_messages(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
            for m in messages
        )
    )


def settings_key(config: Any, options: dict[str, Any]) -> str:
    """What makes two answers comparable: the profile (minus where files live) and the per-call options."""
    profile = {k: v for k, v in config.to_dict().items() if k not in ("home", "path", "name")}
    blob = json.dumps({"profile": profile, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_done(out: Path, settings: str) -> dict[str, dict[str, Any]]:
    """Answered rows by id. Error rows and a line cut off by a kill are removed (atomically) so they are redone;
    rows made with other settings stop the batch rather than mix two systems' answers in one file."""
    if not out.is_file():
        return {}
    data = out.read_bytes()
    *lines, tail = data.split(b"\n")
    keep: list[bytes] = []
    done: dict[str, dict[str, Any]] = {}
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{out} line {no} is not a JSON row; fix or delete that line") from None
        if row.get("settings") != settings:
            raise InputError(f"{out} holds answers made with other settings (profile or options); use another --out")
        if row.get("error") is None:
            keep.append(line)
            done[str(row["id"])] = row
    if len(keep) != sum(1 for line in lines if line.strip()) or tail.strip():
        write_atomic(out, b"".join(line + b"\n" for line in keep))
    return done


def answer_one(qa: Any, question: Question, shared: tuple[list[Any], dict[str, Any]]) -> dict[str, Any]:
    """The task an executor runs: one question, never an exception (a failure is the row's ``error``)."""
    documents, options = shared
    try:
        ans = qa.ask(question.question, docs=documents,
                     messages=[dict(m) for m in question.messages] if question.messages else None,
                     **{k: v for k, v in options.items() if v is not None})  # fmt: skip
        return {"id": question.id, **ans.to_dict(), "error": None}
    except Exception as exc:  # noqa: BLE001 - recorded as an error row; the batch goes on
        return error_row(question, options, exc)


def error_row(question: Question, options: dict[str, Any], exc: BaseException | str) -> dict[str, Any]:
    if isinstance(exc, BaseException):
        text = " ".join(str(exc).split()) or type(exc).__name__
        exc = text if isinstance(exc, ChatQAError) else f"{type(exc).__name__}: {text}"
    asked = question.question or (question.messages[-1]["content"] if question.messages else None)
    row: dict[str, Any] = {"id": question.id, **dict.fromkeys(ROW_FIELDS), "error": exc}
    row.update(mode=options.get("mode"), question=asked, citations=[], usage={}, attempts=[], truncated=False)
    return row


def run_batch(
    questions: Sequence[Question],
    out: str | Path,
    *,
    qa: Any,
    executor: Executor | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> BatchResult:
    """Answer ``questions`` into ``out`` (JSONL), resuming: ids already answered there are skipped.

    ``qa`` gives the config (and, for the local executor, answers); documents are read here, in the driver, once
    per document set, and handed to the executor with every item of that set."""
    out = Path(out)
    options = {k: v for k, v in (options or {}).items() if k in ASK_OPTIONS}
    settings = settings_key(qa.config, options)
    done = load_done(out, settings)
    todo = [q for q in questions if q.id not in done]
    result = BatchResult(out, len(questions), 0, 0, len(questions) - len(todo))
    executor = executor or LocalExecutor(qa)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with out.open("a", encoding="utf-8") as handle, _bar(progress, len(todo)) as advance:

        def write(row: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            row["settings"] = settings
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            result.write_s += time.perf_counter() - t0
            if row["error"] is None:
                result.answered += 1
                result.prompt_tokens += int(row["usage"].get("prompt_tokens", 0))
                result.cached_tokens += int(row["usage"].get("cached_tokens", 0))
            else:
                result.errors += 1
            advance()

        works = []
        for key, group in _by_docs(todo).items():
            try:
                documents = qa.documents(list(group[0].docs))  # read once per set, here in the driver
            except ChatQAError as exc:  # a missing or unreadable document: its questions are error rows
                for q in group:
                    write(error_row(q, options, exc))
                continue
            works.extend(Work(key, q, (documents, options)) for q in group)
        for outcome in executor.run(answer_one, works):
            row = outcome.result if outcome.error is None else error_row(outcome.work.item, options, outcome.error)
            write(row)
    result.seconds = time.perf_counter() - start
    result.executor = {"name": type(executor).__name__, **executor.stats.to_dict()}
    return result


def _by_docs(questions: Sequence[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = {}
    for q in questions:
        key = json.dumps([str(Path(d).expanduser().resolve()) if d != "-" else d for d in q.docs])
        groups.setdefault(key, []).append(q)
    return groups


@contextlib.contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """done/total, rate and ETA on stderr when ``enabled`` (a terminal); nothing otherwise."""
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich import progress as rp
    from rich.console import Console
    from rich.text import Text

    class Rate(rp.ProgressColumn):
        def render(self, task: rp.Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed * 60:.1f} q/min" if speed else "")

    columns = (rp.TextColumn("batch"), rp.BarColumn(), rp.MofNCompleteColumn(), Rate(), rp.TimeElapsedColumn(),
               rp.TextColumn("ETA"), rp.TimeRemainingColumn())  # fmt: skip
    with rp.Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("batch", total=total)
        yield lambda: bar.update(task, advance=1)
