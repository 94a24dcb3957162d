"""End to end with the real embedded models: questions about the bundled sample document.

The generator is the shipped default, Qwen2.5-Coder-0.5B-Instruct with its RAG budget (profile top_k chunks of
chunk_tokens). The default suite asks the six "who" questions of the question file; the slow test asks all 19
factual questions per route and prints the accuracy.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUESTIONS, SAMPLE

WHO = ("q01", "q03", "q05", "q10", "q12", "q18")


def questions(ids: tuple[str, ...] | None = None) -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    return [q for q in rows if q["answers"] and (ids is None or q["id"] in ids)]


def correct(answer: str, q: dict) -> bool:
    return any(a.lower() in answer.lower() for a in q["answers"])


def test_rag_answers_who_questions_about_the_sample(default_qa) -> None:
    qa = default_qa
    results = []
    for q in questions(WHO):
        ans = qa.ask(q["question"], docs=[SAMPLE], mode="rag")
        assert ans.route == "rag" and len(ans.citations) == qa.config.retrieval.top_k
        assert all(c["doc"] == SAMPLE.name for c in ans.citations)
        results.append((q["id"], correct(ans.answer, q), ans.answer))
    print("\n" + "\n".join(map(str, results)))
    assert sum(ok for _, ok, _ in results) >= 4, results


def test_answer_cites_the_chunk_with_the_evidence(default_qa) -> None:
    qa = default_qa
    q = questions(("q01",))[0]
    ans = qa.ask(q["question"], docs=[SAMPLE], mode="rag")
    text = SAMPLE.read_text()
    lines = text.splitlines()
    cited = ["\n".join(lines[c["lines"][0] - 1 : c["lines"][1]]) for c in ans.citations]
    assert any(q["evidence"] in block for block in cited)
    budget = qa.config.retrieval.top_k * qa.config.chunking.chunk_tokens
    assert budget * 0.8 < ans.usage["prompt_tokens"] <= qa.config.generator.effective_window  # sized to the model
    assert ans.usage["completion_tokens"] >= 1
    assert ans.usage["seconds"]["prefill"] > 0 and ans.usage["seconds"]["total"] >= ans.usage["seconds"]["prefill"]


NOTE = "The lighthouse at Skerry Head was lit in 1872 by its first keeper, Margaret Vane.\n"


def test_auto_with_the_shipped_calibrated_profile_takes_both_routes(default_qa, tmp_path) -> None:
    """The default profile's calibrated effective window sends the sample (~10K tokens) to RAG and a one-line
    note to long context, with real generation on both."""
    qa = default_qa
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    big = qa.ask("Who was the chief engineer of the canal?", docs=[SAMPLE], mode="auto")
    assert big.route == "rag" and "exceeds the effective window (" in big.reason
    small = qa.ask("Who was the first keeper of the lighthouse?", docs=[note], mode="auto")
    assert small.route == "long" and "fits the effective window" in small.reason
    assert "Vane" in small.answer and [c["doc"] for c in small.citations] == ["note.txt"]


def test_multi_document_answer_cites_the_document_with_the_fact(default_qa, tmp_path) -> None:
    qa = default_qa
    note = tmp_path / "skerry.txt"
    note.write_text(NOTE)
    ans = qa.ask("Who was the first keeper of the lighthouse at Skerry Head?", docs=[SAMPLE, note], mode="rag",
                 top_k=2)  # fmt: skip
    docs = [c["doc"] for c in ans.citations]
    assert "skerry.txt" in docs and set(docs) <= {SAMPLE.name, "skerry.txt"}
    assert "Vane" in ans.answer


def test_self_route_with_real_models_keeps_a_confident_rag_answer(default_qa, tmp_path) -> None:
    """Self-Route on the real default model (its profile declines by the judge): a confident RAG answer stands,
    with no attempt recorded. (Its fallback is tested with named fake generators in test_pipeline_routing; on
    real models the instruction's is measured in eval/results passkey-budget16, the judge's in novels-qa.)"""
    qa = default_qa
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    kept = qa.ask("Who was the first keeper of the lighthouse?", docs=[note], mode="self-route")
    assert kept.route == "rag" and kept.attempts == [] and "Vane" in kept.answer
    assert "self-route" in kept.reason


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "at_least"), [("rag", 10), ("long", 5)])
def test_all_factual_questions(default_qa, mode: str, at_least: int) -> None:
    qa = default_qa
    """Measured 12/19 (rag) and 7/19 (long) on 2026-11-22; the long route reuses the document's KV state,
    so after the first question each costs well under a second of prefill."""
    qs = questions()
    results = [(q["id"], correct(qa.ask(q["question"], docs=[SAMPLE], mode=mode).answer, q)) for q in qs]
    score = sum(ok for _, ok in results)
    print(f"\n{mode}: {score}/{len(qs)} {results}")
    assert score >= at_least


def test_self_route_judge_on_real_models(default_qa, tmp_path) -> None:
    """Self-Route's judge on the real default model, mechanics only (how well it judges is measured in
    eval/results, novels-qa): the verdict is recorded; a kept answer is rag's own (the same prompt, so the same
    answer); a decline on a document that fits is answered by long context, the RAG answer kept as an attempt."""
    from chatqa import ChatQA

    base = default_qa
    qa = ChatQA(base.config.replace(**{"routing.self_route_decline": "judge"}), generator=base.generator,
                embedder=base.embedder)  # fmt: skip
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    for question in ("Who was the first keeper of the lighthouse?", "What was the name of the keeper's dog?"):
        ans = qa.ask(question, docs=[note], mode="self-route")
        judged = ans.usage["judge"]
        assert 0.0 <= judged["p_yes"] <= 1.0 and judged["prompt_tokens"] > 0
        assert judged["threshold"] == qa.config.routing.judge_threshold
        assert "judge P(yes)" in ans.reason
        rag = base.ask(question, docs=[note], mode="rag")
        if judged["declined"]:
            assert ans.route == "long" and ans.attempts[0]["answer"] == rag.answer
        else:
            assert ans.route == "rag" and ans.prompt_sha256 == rag.prompt_sha256 and ans.answer == rag.answer
        assert ans.usage["prompt_tokens"] > rag.usage["prompt_tokens"]  # the judge's read is counted
