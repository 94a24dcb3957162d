"""The retriever loading on a thread while the generator loads and the document is planned (issue 15: a second
question in a new process spent half its time importing sentence-transformers after everything else).

Real models: the default profile's generator and MiniLM. What must hold: the preload starts only for requests
that will most likely read by dense retrieval, its model is the one retrieval then uses (loaded once), a failed
load surfaces as the same one-line error in the asking thread, and the answer is the one the fixture's
already-loaded pipeline gives."""

from __future__ import annotations

import threading
import time

import pytest

from chatqa import ChatQA
from chatqa.errors import ModelLoadError
from chatqa.preload import Preload
from chatqa.timing import Timer
from tests.conftest import SAMPLE

QUESTION = "Who was the chief engineer of the canal?"


def test_preload_runs_on_its_own_thread_and_hands_back_the_result() -> None:
    started = threading.Event()
    release = threading.Event()

    def load() -> str:
        started.set()
        release.wait(10)
        return threading.current_thread().name

    preload = Preload(load, "probe")
    assert started.wait(10) and not preload.done()  # running, while this thread goes on
    release.set()
    assert preload.result() == "chatqa-preload-probe" and preload.done()


def test_preload_raises_the_loaders_error_in_the_callers_thread() -> None:
    def load() -> None:
        time.sleep(0.01)
        raise ModelLoadError("cannot load retriever 'x' from local files")

    with pytest.raises(ModelLoadError, match="cannot load retriever"):
        Preload(load, "failing").result()


def _fresh(home, **overrides) -> ChatQA:
    return ChatQA.from_profile("default", home=str(home), **overrides)


@pytest.mark.parametrize(
    ("question", "options", "starts"),
    [
        (QUESTION, {}, True),  # auto, a 10K-token document over a 1K effective window: RAG
        (QUESTION, {"mode": "rag"}, True),
        (QUESTION, {"mode": "self-route"}, True),  # RAG first
        (QUESTION, {"retrieval": "bm25"}, False),  # no dense retrieval
        (QUESTION, {"mode": "long", "truncate": "middle"}, False),
        ("Summarise the whole document.", {}, False),  # auto: a global question goes to map-reduce
    ],
)
def test_preload_starts_only_when_dense_retrieval_is_likely(tmp_path, question, options, starts) -> None:
    qa = _fresh(tmp_path)
    request = qa.request(question, [SAMPLE], **options)
    qa._preload_embedder(request)
    try:
        assert (qa._embedder_preload is not None) is starts
    finally:
        if qa._embedder_preload is not None:
            qa._embedder_preload.result()  # leave no load running behind the test


def test_auto_on_a_document_that_may_fit_does_not_preload(tmp_path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("The canal's chief engineer was Josiah Wrenfield. " * 20, encoding="utf-8")
    qa = _fresh(tmp_path)
    qa._preload_embedder(qa.request(QUESTION, [short]))
    assert qa._embedder_preload is None


def test_no_preload_beside_a_backend_that_imports_transformers_itself(tmp_path) -> None:
    qa = _fresh(tmp_path, **{"generator.backend": "hf"})
    qa._preload_embedder(qa.request(QUESTION, [SAMPLE], mode="rag"))
    assert qa._embedder_preload is None


def test_preloaded_retriever_answers_as_the_loaded_pipeline_does(default_qa, tmp_path) -> None:
    """A fresh pipeline (nothing loaded) answers through the preloaded retriever, with the answer, citations and
    prompt of the session's pipeline whose models were loaded one after the other."""
    reference = default_qa.ask(QUESTION, docs=[SAMPLE])
    qa = _fresh(tmp_path)
    try:
        request = qa.request(QUESTION, [SAMPLE])
        plan = qa.plan(request)
        preload = qa._embedder_preload
        assert preload is not None  # started by the plan, before the generator loaded
        timer = Timer()
        route, reply, _ = qa.execute(request, plan, timer)
        assert qa._embedder_preload is None and qa._embedder is preload.result()  # used, and loaded once
        assert route.route == reference.route == "rag"
        assert reply.text == reference.answer
        assert [c["chunk"] for c in reply.citations] == [c["chunk"] for c in reference.citations]
        assert "load" in timer.seconds  # waiting for it is charged to loading
    finally:
        qa.close()


def test_a_failed_preload_is_the_askers_one_line_error(tmp_path) -> None:
    qa = _fresh(tmp_path, **{"retriever.model": str(tmp_path / "no-such-model")})
    try:
        request = qa.request(QUESTION, [SAMPLE], mode="rag")
        qa._preload_embedder(request)
        assert qa._embedder_preload is not None
        with pytest.raises(ModelLoadError, match="cannot load retriever"):
            _ = qa.embedder
        assert qa._embedder_preload is None  # dropped: a later call loads (and fails) again, not a stale thread
    finally:
        qa.close()
