"""Issue 11 item 1: two threads asking one ChatQA at once aborted the process in llama.cpp
(``GGML_ASSERT(logits != nullptr)``, SIGABRT). Here on the real model: both answers arrive, and each equals
the answer the same question gets alone (the per-instance lock serialises them)."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import SAMPLE


@pytest.mark.slow
def test_two_threads_share_one_instance_on_real_llamacpp(qa) -> None:
    questions = ["Who was the chief engineer of the canal?", "Which town does the canal start from?"]
    alone = [qa.ask(q, docs=[SAMPLE], mode="rag", max_new_tokens=12).answer for q in questions]
    together: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            together[i] = qa.ask(questions[i], docs=[SAMPLE], mode="rag", max_new_tokens=12).answer
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and [together.get(0), together.get(1)] == alone
