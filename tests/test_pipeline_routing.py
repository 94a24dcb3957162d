"""Routes through ChatQA.ask with a FAKE generator (scripted answers): tests the pipeline's routing logic
(self-route fallback, long-context refusal, truncation, top-k, citations) without paying for generation.
Retrieval, chunking and the tokenizer are the real embedded ones."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from chatqa import ChatQA
from chatqa.config import GeneratorConfig
from chatqa.errors import ConfigError, ContextTooLongError, InputError
from chatqa.generation import Generation, Generator, WordProbabilities
from chatqa.ingest import Document
from chatqa.prompting import JUDGE, shared_cut
from tests.conftest import SAMPLE


class FakeGenerator(Generator):
    """Scripted answers; records every prompt so tests can see what the model would have read."""

    def __init__(self, tokenizer, answers: Sequence[str], window: int = 32768) -> None:
        self.config = GeneratorConfig(context_window=window)
        self.tokenizer = tokenizer
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.stops: list[list[str]] = []

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = (),
                 on_text: Callable[[str], None] | None = None, prefix: str | None = None) -> Generation:  # fmt: skip
        self.prompts.append(prompt)
        self.stops.append(list(stop))
        text = self.answers.pop(0)
        if on_text:  # streams as a real backend does
            on_text(text)
        return Generation(text, self.tokenizer.count(prompt), 3, 0.01, 0.01)


@pytest.fixture
def fake_qa(qa, home):
    def make(answers: Sequence[str], window: int = 32768, effective: int | None = None) -> tuple[ChatQA, FakeGenerator]:
        config = qa.config.replace()  # a copy: the shipped profile carries a calibrated effective window
        config.generator.effective_window = effective
        gen = FakeGenerator(qa.tokenizer, answers, window)
        return ChatQA(config, generator=gen, tokenizer=qa.tokenizer, embedder=qa.embedder), gen

    return make


def test_self_route_falls_back_to_long_context_when_rag_declines(fake_qa) -> None:
    qa, gen = fake_qa(["unanswerable", "Josiah Wrenfield"])
    ans = qa.ask("Who was the chief engineer of the canal?", docs=[SAMPLE], mode="self-route")
    assert ans.route == "long" and "declined" in ans.reason
    assert ans.answer == "Josiah Wrenfield"
    assert ans.attempts[0]["route"] == "rag" and ans.attempts[0]["answer"] == "unanswerable"
    assert "unanswerable" in gen.prompts[0]  # the RAG try asked the model to decline
    assert len(gen.prompts[1]) > len(gen.prompts[0])  # the second read the whole document
    assert ans.usage["prompt_tokens"] > ans.usage["document_tokens"]


def test_self_route_keeps_a_confident_rag_answer(fake_qa) -> None:
    qa, gen = fake_qa(["Josiah Wrenfield"])
    ans = qa.ask("Who was the chief engineer of the canal?", docs=[SAMPLE], mode="self-route")
    assert ans.route == "rag" and ans.attempts == [] and len(gen.prompts) == 1
    assert len(ans.citations) == 5
    assert [c["chunk"] for c in ans.citations] == sorted(c["chunk"] for c in ans.citations)  # OP-RAG order


def test_auto_picks_long_for_a_small_document_and_rag_for_a_small_window(fake_qa) -> None:
    qa, _ = fake_qa(["x"], effective=None)
    assert qa.ask("Who?", docs=[SAMPLE], mode="auto").route == "long"
    qa, _ = fake_qa(["x"], effective=2048)  # the shipped default's calibrated value
    calibrated = qa.ask("Who?", docs=[SAMPLE], mode="auto")
    assert calibrated.route == "rag" and "effective window" in calibrated.reason
    qa, gen = fake_qa(["x"], window=4000)
    ans = qa.ask("Who?", docs=[SAMPLE], mode="auto")
    assert ans.route == "rag" and "exceeds" in ans.reason
    assert "top-k reduced" in ans.reason  # 5 x 1200 tokens cannot fit 4000: the weakest chunks are dropped
    assert qa.tokenizer.count(gen.prompts[0]) < 4000


def test_long_refuses_a_document_that_does_not_fit_unless_truncation_is_asked(fake_qa) -> None:
    qa, gen = fake_qa(["x"], window=3000)
    with pytest.raises(ContextTooLongError, match="does not fit"):
        qa.ask("Who?", docs=[SAMPLE], mode="long")
    ans = qa.ask("Who?", docs=[SAMPLE], mode="long", truncate="middle")
    assert ans.truncated and ans.route == "long"
    text = SAMPLE.read_text()
    assert text[:200].strip()[:100] in gen.prompts[0] and text.rstrip()[-100:] in gen.prompts[0]
    assert qa.tokenizer.count(gen.prompts[0]) <= 3000


def test_the_middle_cut_is_the_same_for_questions_of_different_lengths(fake_qa) -> None:
    """The document part of a truncated long prompt is the KV prefix every question on it shares."""
    qa, gen = fake_qa(["x", "y"], window=3000)
    qa.ask("Who?", docs=[SAMPLE], mode="long", truncate="middle")
    qa.ask("Who designed the aqueduct that carries the canal over the river, and when?", docs=[SAMPLE],
           mode="long", truncate="middle")  # fmt: skip
    shared = os.path.commonprefix(gen.prompts[:2])
    assert SAMPLE.read_text().rstrip()[-100:] in shared  # head and tail both identical


@pytest.mark.parametrize(("room", "cut"), [(31_900, 31_744), (31_744, 31_744), (2_047, 2_047), (2_048, 2_048),
                                           (2_100, 2_048)])  # fmt: skip
def test_shared_cut_rounds_large_rooms_down_to_512(room: int, cut: int) -> None:
    assert shared_cut(room) == cut


def test_multi_turn_query_carries_earlier_user_turns(fake_qa) -> None:
    qa, gen = fake_qa(["Thomas Ebbage"])
    messages = [
        {"role": "user", "content": "Tell me about the Sallowby Aqueduct."},
        {"role": "assistant", "content": "It carries the canal over a river."},
        {"role": "user", "content": "Who designed it?"},
    ]
    ans = qa.ask(docs=[SAMPLE], messages=messages, mode="rag")
    assert ans.question == "Who designed it?"
    assert "It carries the canal over a river." in gen.prompts[0]
    assert ans.citations and {c["doc"] for c in ans.citations} == {SAMPLE.name}
    chunks = qa.index([SAMPLE]).chunks
    cited = " ".join(chunks[c["chunk"]].text for c in ans.citations)
    # "Who designed it?" alone names nothing: the passage is found through the earlier turn's "Sallowby Aqueduct"
    assert "The Sallowby Aqueduct was designed by Thomas Ebbage" in cited


def test_bad_arguments(fake_qa) -> None:
    qa, _ = fake_qa(["x"])
    with pytest.raises(InputError, match="empty"):
        qa.ask("   ", docs=[SAMPLE])
    with pytest.raises(InputError, match="unknown mode"):
        qa.ask("q", docs=[SAMPLE], mode="magic")
    with pytest.raises(InputError, match="top-k"):
        qa.ask("q", docs=[SAMPLE], top_k=0)
    with pytest.raises(InputError, match="end messages with a user turn"):
        qa.ask(docs=[SAMPLE], messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(InputError):
        qa.ask("q", docs=[Document.from_text("  ", "blank")])


@pytest.mark.parametrize("mode", ["long", "rag"])
def test_extra_stop_strings_reach_the_generator_on_every_route(fake_qa, mode: str) -> None:
    qa, gen = fake_qa(["4", "x"])
    qa.ask("Who?", docs=[SAMPLE], mode=mode, template="{context}\n{input}\nThe answer is <", stop=[">"])
    assert ">" in gen.stops[0] and gen.prompts[0].endswith("The answer is <")
    qa.ask("Who?", docs=[SAMPLE], mode=mode)
    assert ">" not in gen.stops[1]  # stop strings belong to one call, not to the instance


def test_self_route_streams_a_declined_answer_that_cannot_fall_back(fake_qa) -> None:
    """Issue 14: a declined RAG answer on a document too big for LC was never streamed (an empty line)."""
    qa, gen = fake_qa(["unanswerable"], window=4000)  # the sample (~7K tokens) cannot fall back to LC
    shown: list[str] = []
    ans = qa.ask("Who?", docs=[SAMPLE], mode="self-route", on_text=shown.append)
    assert ans.route == "rag" and ans.attempts == [] and len(gen.prompts) == 1
    assert "".join(shown) == "unanswerable"


def test_self_route_streams_only_the_final_answer(fake_qa) -> None:
    qa, _ = fake_qa(["Josiah Wrenfield"])
    shown: list[str] = []
    assert qa.ask("Who?", docs=[SAMPLE], mode="self-route", on_text=shown.append).route == "rag"
    assert "".join(shown) == "Josiah Wrenfield"
    qa, _ = fake_qa(["unanswerable", "Josiah Wrenfield"])
    shown = []
    assert qa.ask("Who?", docs=[SAMPLE], mode="self-route", on_text=shown.append).route == "long"
    assert "".join(shown) == "Josiah Wrenfield"  # the declined RAG try is not shown


class FakeJudgeGenerator(FakeGenerator):
    """FAKE: scripted answers and scripted (P(yes), P(no)) for Self-Route's judge; records the judge's prompts."""

    def __init__(self, tokenizer, answers: Sequence[str], judged: Sequence[tuple[float, float]],
                 window: int = 32768) -> None:  # fmt: skip
        super().__init__(tokenizer, answers, window)
        self.judged = list(judged)
        self.judge_prompts: list[str] = []
        self.judge_words: list[tuple[str, ...]] = []

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        self.judge_prompts.append(prompt)
        self.judge_words.append(tuple(words))
        return WordProbabilities(list(self.judged.pop(0)), self.tokenizer.count(prompt), 0.02)


@pytest.fixture
def judged_qa(qa, home):
    """Self-Route with ``routing.self_route_decline: judge`` over a FAKE judge."""

    def make(answers: Sequence[str], judged: Sequence[tuple[float, float]] | None,
             window: int = 32768) -> tuple[ChatQA, FakeGenerator]:  # fmt: skip
        """``judged=None``: a generator that gives no probabilities."""
        config = qa.config.replace(**{"routing.self_route_decline": "judge"})
        config.generator.effective_window = None
        gen = (FakeGenerator(qa.tokenizer, answers, window) if judged is None
               else FakeJudgeGenerator(qa.tokenizer, answers, judged, window))  # fmt: skip
        return ChatQA(config, generator=gen, tokenizer=qa.tokenizer, embedder=qa.embedder), gen

    return make


QUESTION = "Who was the chief engineer of the canal?"


def test_a_judge_that_says_yes_keeps_the_plain_rag_answer(judged_qa) -> None:
    qa, gen = judged_qa(["Josiah Wrenfield", "Josiah Wrenfield"], [(0.9, 0.05)])
    ans = qa.ask(QUESTION, docs=[SAMPLE], mode="self-route")
    assert ans.route == "rag" and ans.answer == "Josiah Wrenfield" and ans.attempts == []
    assert "judge P(yes) 0.947 >= 0.5" in ans.reason
    qa.ask(QUESTION, docs=[SAMPLE], mode="rag")
    assert gen.prompts[0] == gen.prompts[1]  # the answer prompt is rag's own: no decline instruction in it
    # the judge reads the same chunks, asked its yes/no question in place of the user's
    assert gen.judge_prompts == [gen.prompts[0].replace(QUESTION, JUDGE.format(question=QUESTION))]
    assert gen.judge_words == [("yes", "no")]
    judged = ans.usage["judge"]
    assert judged["p_yes"] == pytest.approx(0.9 / 0.95) and (judged["yes"], judged["no"]) == (0.9, 0.05)
    assert judged["declined"] is False and judged["threshold"] == 0.5
    count = qa.tokenizer.count
    assert judged["prompt_tokens"] == count(gen.judge_prompts[0])
    assert ans.usage["prompt_tokens"] == count(gen.prompts[0]) + count(gen.judge_prompts[0])


def test_a_judged_decline_falls_back_to_long_context_when_the_document_fits(judged_qa) -> None:
    qa, gen = judged_qa(["Thomas Telford", "Josiah Wrenfield"], [(0.1, 0.7)])
    ans = qa.ask(QUESTION, docs=[SAMPLE], mode="self-route")
    assert ans.route == "long" and ans.answer == "Josiah Wrenfield"
    assert "judge P(yes) 0.125 < 0.5" in ans.reason and "long context" in ans.reason
    assert ans.attempts[0]["route"] == "rag" and ans.attempts[0]["answer"] == "Thomas Telford"
    assert ans.usage["judge"]["declined"] is True and len(gen.prompts[1]) > len(gen.prompts[0])


def test_a_judged_decline_stands_when_long_context_cannot_take_over(judged_qa) -> None:
    qa, _ = judged_qa(["The canal's dog was called Rex"], [(0.2, 0.6)], window=4000)  # the sample is ~7K tokens
    shown: list[str] = []
    ans = qa.ask("What was the lock keeper's dog called?", docs=[SAMPLE], mode="self-route", on_text=shown.append)
    assert ans.route == "rag" and ans.answer == "unanswerable" and "".join(shown) == "unanswerable"
    assert "does not fit the window" in ans.reason and "the decline stands" in ans.reason
    assert ans.attempts[0]["answer"] == "The canal's dog was called Rex"  # the guess is kept for the curious
    assert ans.citations and ans.citations == ans.attempts[0]["citations"]


def test_the_judge_is_asked_in_self_route_only(judged_qa) -> None:
    qa, gen = judged_qa(["Josiah Wrenfield"], [])
    qa.ask(QUESTION, docs=[SAMPLE], mode="rag")
    assert gen.judge_prompts == []


def test_a_generator_without_probabilities_is_one_clear_line(judged_qa) -> None:
    qa, _ = judged_qa(["Josiah Wrenfield"], None)
    with pytest.raises(ConfigError, match="gives no next-token probabilities.*self_route_decline: instruction"):
        qa.ask(QUESTION, docs=[SAMPLE], mode="self-route")


class SlowFakeGenerator(FakeGenerator):
    """FAKE: sleeps inside generate and records how many calls were inside at once."""

    def __init__(self, tokenizer, answers: Sequence[str]) -> None:
        super().__init__(tokenizer, answers)
        self.inside, self.seen = 0, []

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = (),
                 on_text: Callable[[str], None] | None = None, prefix: str | None = None) -> Generation:  # fmt: skip
        import time

        self.inside += 1
        self.seen.append(self.inside)
        time.sleep(0.2)
        self.inside -= 1
        return super().generate(prompt, max_new_tokens, stop, on_text, prefix)


def test_two_threads_never_generate_at_once_on_one_instance(fake_qa) -> None:
    """Issue 11 item 1 (llama.cpp aborted with GGML_ASSERT): calls on one instance are serialised by its lock."""
    import threading

    base, _ = fake_qa(["unused"])
    gen = SlowFakeGenerator(base.tokenizer, ["a", "b"])
    qa = ChatQA(base.config, generator=gen, embedder=base.embedder)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(qa.ask("Who?", docs=[SAMPLE], mode="long").answer))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gen.seen == [1, 1] and sorted(answers) == ["a", "b"]


def test_the_judge_asks_in_the_profiles_own_format_under_a_benchmark_template(judged_qa) -> None:
    """A benchmark's template frames the answer only: the judge's question is chatqa's own, asked the way the
    profile's model was tuned to answer (here: the fixture profile's format, with no template text in it)."""
    qa, gen = judged_qa(["Josiah Wrenfield", "Josiah Wrenfield"], [(0.9, 0.05), (0.9, 0.05)])
    template = "BENCHMARK FORMAT\n{context}\nQ: {input}\nA:"
    ans = qa.ask(QUESTION, docs=[SAMPLE], mode="self-route", template=template)
    assert ans.route == "rag" and gen.prompts[0].startswith("BENCHMARK FORMAT")
    assert len(gen.judge_prompts) == 1 and "BENCHMARK FORMAT" not in gen.judge_prompts[0]
    assert JUDGE.format(question=QUESTION) in gen.judge_prompts[0]
    qa.ask(QUESTION, docs=[SAMPLE], mode="self-route")  # without a template: the answer's prompt, its question swapped
    assert gen.judge_prompts[1] == gen.prompts[1].replace(QUESTION, JUDGE.format(question=QUESTION))
    # the chunks the judge reads are the ones the templated answer read
    chunk_line = next(line for line in gen.prompts[0].splitlines() if "Wrenfield" in line)
    assert chunk_line in gen.judge_prompts[0]
