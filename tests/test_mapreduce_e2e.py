"""Map-reduce end to end on a real embedded model (SmolLM2 135M through llama.cpp, the fastest that reads a chat
prompt), with small windows set by config overrides so a short document really needs several map calls and a
reduce that does not fit one call. Also: the KV prefixes of the sections reused by a second question, the
refusal on the command line, and En.Sum (InfiniteBench's official format and metric) on map-reduce output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chatqa import ChatQA
from chatqa.cli import main
from chatqa.evaluation.metrics import ib_longbook_sum_eng
from chatqa.evaluation.report import score_predictions
from chatqa.evaluation.runner import run_suite
from chatqa.evaluation.suites import load_suite
from chatqa.ingest import Document
from tests.conftest import SAMPLE

# ~2,700 tokens of the sample document: the canal's history, start to finish of the first sections
EXCERPT = SAMPLE.read_text(encoding="utf-8")[:11_000]
SMALL = {  # a 768-token window: sections of a few 150-token chunks; the notes of 3 sections overflow a reduce
    "generator.context_window": 768, "generator.effective_window": None, "chunking.chunk_tokens": 150,
    "mapreduce.map_max_new_tokens": 40, "mapreduce.reduce_max_new_tokens": 40,
}  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ChatQA:
    qa = ChatQA.from_profile("smollm2", home=str(tmp_path_factory.mktemp("mr-home")), **SMALL)
    yield qa
    qa.close()


def test_map_reduce_recurses_on_a_real_model(small: ChatQA) -> None:
    doc = Document.from_text(EXCERPT, "harrow-excerpt.txt")
    # an answer budget of 460 leaves a reduce ~130 tokens of notes: at most two 40-token notes with their labels
    ans = small.ask("Summarise the history of the canal.", docs=[doc], max_new_tokens=460)  # mode: auto
    u = ans.usage
    assert ans.mode == "auto" and ans.route == "map-reduce" and ans.answer.strip()
    assert ans.reason.startswith("global question; document") and "exceeds the" in ans.reason
    assert u["map_calls"] == u["sections"] >= 4
    kept = [p for p in ans.partials if p["kept"]]
    assert len(kept) >= 3  # a summary question: most sections have something to say
    assert u["reduce_levels"] >= 2 and u["reduce_calls"] >= 2  # the notes did not fit one call: recursion
    assert u["stages"]["map"]["calls"] == u["map_calls"] and u["stages"]["reduce"]["seconds"] > 0
    assert u["prompt_tokens"] == u["stages"]["map"]["prompt_tokens"] + u["stages"]["reduce"]["prompt_tokens"]
    assert f"{u['map_calls']} map calls" in ans.reason and "reduce calls" in ans.reason
    # citations are the index's chunks and line ranges, one per section whose notes were used, in order
    index = small.index([doc])
    by_id = {c.id: c for c in index.chunks}
    assert [c["section"] for c in ans.citations] == [p["section"] for p in kept]
    for cite in ans.citations:
        first, last = by_id[cite["chunks"][0]], by_id[cite["chunks"][-1]]
        assert cite["lines"] == [first.line_start, last.line_end] and cite["chunk"] == first.id


def test_auto_answers_by_rag_when_map_reduce_would_exceed_max_map_calls(small: ChatQA) -> None:
    doc = Document.from_text(EXCERPT, "harrow-excerpt.txt")
    ans = small.ask("Summarise the history of the canal.", docs=[doc], max_map_calls=2, max_new_tokens=24)
    assert ans.route == "rag" and "(--max-map-calls 2): RAG" in ans.reason and "map_calls" not in ans.usage
    assert all(c["chunk"] is not None and "section" not in c for c in ans.citations)


def test_a_second_question_reuses_the_sections_kv_prefixes(tmp_path: Path) -> None:
    """Sections of ~1,800 tokens (the profile's effective window) are stored after the first question; the
    second question on the same document restores them instead of reading them again."""
    qa = ChatQA.from_profile("smollm2", home=str(tmp_path), **{"mapreduce.map_max_new_tokens": 16,
                                                                "chunking.chunk_tokens": 1600,
                                                                "generator.effective_window": 2048})  # fmt: skip
    try:
        doc = Document.from_text(SAMPLE.read_text(encoding="utf-8")[:16_000], "harrow-16k.txt")
        first = qa.ask("Summarise the whole text.", docs=[doc], mode="map-reduce", max_new_tokens=24)
        second = qa.ask("Who built the canal?", docs=[doc], mode="map-reduce", max_new_tokens=24)
    finally:
        qa.close()
    assert first.usage["map_calls"] >= 2 and first.usage["map_calls"] == second.usage["map_calls"]
    m1, m2 = first.usage["stages"]["map"], second.usage["stages"]["map"]
    assert m1["cached_tokens"] == 0
    # every section's prefix came from the store, whole: each map call read only its instruction and question
    assert m2["prompt_tokens"] - m2["cached_tokens"] <= 100 * second.usage["map_calls"]


def test_default_profile_second_question_restores_every_section_and_answers_as_a_cold_run(tmp_path: Path) -> None:
    """The shipped default (Qwen2.5-Coder-0.5B, effective window 1,024): sections of at most ~780 tokens, each
    stored whole by the first question (not cut to llama.cpp's 512-token batch, which would keep 512). The
    second question restores every one, in the same process and in a new one, and its greedy map answers and
    final answer are those of a cold run with no store (every read breaks its batches at the prefix's end)."""
    from chatqa.generation import load_generator

    text = SAMPLE.read_text(encoding="utf-8")
    doc = Document.from_text(text[: text.rfind("\n\n", 0, 6500)], "harrow-part.txt")  # ~1,500 tokens: 2+ sections
    opts = {"mapreduce.map_max_new_tokens": 24}
    q1, q2 = "Summarise the whole text.", "Who built the canal?"

    def ask(qa: ChatQA, question: str) -> tuple:
        ans = qa.ask(question, docs=[doc], mode="map-reduce", max_new_tokens=24)
        return ans, [p["answer"] for p in ans.partials]

    first = ChatQA.from_profile("default", home=str(tmp_path), **opts)
    try:
        cold1, _ = ask(first, q1)
        same, same_partials = ask(first, q2)
    finally:
        first.close()
    second = ChatQA.from_profile("default", home=str(tmp_path), **opts)
    try:
        new, new_partials = ask(second, q2)
    finally:
        second.close()
    config = ChatQA.from_profile("default", home=str(tmp_path), **opts).config
    control = ChatQA(config, generator=load_generator(config.generator))  # no state_dir: no store, a cold read
    try:
        cold, cold_partials = ask(control, q2)
    finally:
        control.close()
    calls = cold1.usage["map_calls"]
    assert calls >= 2 and cold1.usage["stages"]["map"]["cached_tokens"] == 0
    for ans in (same, new):
        m = ans.usage["stages"]["map"]
        assert ans.usage["map_calls"] == calls
        # only each call's instruction and question were read: a prefix cut to a multiple of llama.cpp's 512-token
        # batch would have left 100-300 tokens of every section to read again
        assert m["prompt_tokens"] - m["cached_tokens"] <= 100 * calls
    assert cold.usage["stages"]["map"]["cached_tokens"] == 0
    assert same_partials == new_partials == cold_partials
    assert same.answer == new.answer == cold.answer


def test_max_map_calls_refuses_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused after planning, before any generation (nothing is indexed or stored: map-reduce only chunks)."""
    doc = tmp_path / "excerpt.txt"
    doc.write_text(EXCERPT, encoding="utf-8")
    # smollm2 with a 2,048-token effective window (its calibration may say 0, which sizes sections by the nominal
    # 8K window: one section, nothing to refuse)
    shipped = (Path(__file__).parent.parent / "configs" / "smollm2.yaml").read_text(encoding="utf-8")
    profile = tmp_path / "smollm2-2k.yaml"
    profile.write_text(re.sub(r"effective_window: *\d+", "effective_window: 2048", shipped), encoding="utf-8")
    assert "effective_window: 2048" in profile.read_text(encoding="utf-8")
    code = main(["ask", "--profile", str(profile), "--doc", str(doc), "--mode", "map-reduce", "--chunk-tokens", "300",
                 "--max-map-calls", "1", "Summarise the text."])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert re.match(r"chatqa: error: map-reduce needs [2-9] map calls", err[0]) and "--max-map-calls 1" in err[0]


def test_en_sum_format_and_metric_on_map_reduce_output(small: ChatQA, tmp_path: Path) -> None:
    """A tiny book in InfiniteBench's official longbook_sum_eng.jsonl format (id, context, input "", answer list,
    options []), run through the infinitebench suite with --modes map-reduce; its output scored by the row and,
    written as an official preds file (id, prediction, ground_truth), by ``chatqa eval score``."""
    data = tmp_path / "ib"
    data.mkdir()
    summary = ("The Harrow canal was proposed, surveyed and built through the hills, with locks, a tunnel and an "
               "aqueduct; it carried coal and grain until the railways took its trade.")  # fmt: skip
    record = {"id": 0, "context": EXCERPT, "input": "", "answer": [summary], "options": []}
    (data / "longbook_sum_eng.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    suite = load_suite("infinitebench")
    suite.tasks, suite.max_new_tokens = ["longbook_sum_eng"], {"longbook_sum_eng": 96}
    result = run_suite(suite, modes=["map-reduce"], data_dir=data, out=tmp_path / "runs", qa=small)
    rows = [json.loads(line) for line in (result.run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["error"] is None, rows
    row = rows[0]
    assert row["route"] == "map-reduce" and row["map_calls"] >= 2 and row["prediction"].strip()
    assert row["score"] == pytest.approx(ib_longbook_sum_eng(row["prediction"], [summary]))
    assert 0.0 < row["score"] <= 1.0  # the notes of a canal history share words with its summary
    preds = tmp_path / "preds"
    preds.mkdir()
    pred = {"id": row["id"], "prediction": row["prediction"], "ground_truth": [summary]}
    (preds / "preds_longbook_sum_eng.jsonl").write_text(json.dumps(pred) + "\n", encoding="utf-8")
    scores = score_predictions(preds, "infinitebench")
    assert scores["longbook_sum_eng"] == pytest.approx(100 * row["score"], abs=0.006)  # it rounds to 2 places
