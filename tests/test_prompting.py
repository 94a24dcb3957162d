from __future__ import annotations

import pytest

from chatqa.chunking import Chunk
from chatqa.prompting import build_prompt, fill_template, format_chunks


def chunk(i: int, doc: int, text: str) -> Chunk:
    return Chunk(i, doc, f"d{doc}.txt", 0, len(text), 1, 1, 3, text)


@pytest.mark.parametrize("fmt", ["chatqa", "completion"])
def test_context_comes_first_and_is_a_shared_prefix(fmt: str) -> None:
    a = build_prompt(fmt, "CONTEXT BODY", "Who built it?")
    b = build_prompt(fmt, "CONTEXT BODY", "When did it open?", decline=True)
    assert a.text.index("CONTEXT BODY") < a.text.index("Who built it?")
    assert a.text[: a.context_chars] == b.text[: b.context_chars]
    assert "unanswerable" in b.text and "unanswerable" not in a.text


def test_chatqa_format_matches_the_model_card_layout() -> None:
    history = [{"role": "user", "content": "Who built it?"}, {"role": "assistant", "content": "Wrenfield."}]
    p = build_prompt("chatqa", "CTX", "When?", history)
    assert p.text.startswith("System: This is a chat between a user and an artificial intelligence assistant.")
    assert p.text.endswith("User: Answer the following question with a short span. When?\n\nAssistant:")
    assert "User: Who built it?\n\nAssistant: Wrenfield.\n\n" in p.text


def test_completion_format_for_base_models_stops_at_newline() -> None:
    p = build_prompt("completion", "CTX", "When?", [{"role": "user", "content": "Who?"},
                                                    {"role": "assistant", "content": "Him."}])  # fmt: skip
    assert p.text.endswith("CTX\n\nQ: Who?\nA: Him.\nQ: When?\nA:")
    assert "\n" in p.stop


def test_chat_format_uses_the_model_template() -> None:
    seen = []

    def render(messages):
        seen.append(messages)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    p = build_prompt("chat", "CTX", "When?", render_chat=render)
    assert seen[0][0]["role"] == "system" and "CTX" in seen[0][0]["content"]
    assert seen[0][-1] == {"role": "user", "content": "When?"}
    assert p.text[: p.context_chars].endswith("CTX")
    with pytest.raises(ValueError):
        build_prompt("chat", "CTX", "q")
    with pytest.raises(ValueError):
        build_prompt("haiku", "CTX", "q")


def test_chunks_keep_the_given_order_and_mark_document_changes() -> None:
    text = format_chunks([chunk(0, 0, "alpha"), chunk(3, 0, "beta"), chunk(7, 1, "gamma")])
    assert text.index("alpha") < text.index("beta") < text.index("gamma")
    assert "Document: d0.txt" in text and "Document: d1.txt" in text
    assert format_chunks([chunk(0, 0, "solo")]) == "solo"


def test_benchmark_templates_fill_context_and_input() -> None:
    p = fill_template("Read {context}\nQ: {input}\nA:", "DOC", "why?")
    assert p.text == "Read DOC\nQ: why?\nA:"
    assert p.text[: p.context_chars] == "Read DOC"


@pytest.mark.parametrize("fmt", ["chatqa", "completion", "chat"])
@pytest.mark.parametrize("decline", [False, True])
def test_a_frame_filled_is_the_prompt_built_with_its_context(fmt: str, decline: bool) -> None:
    """The pipeline builds each prompt once around a placeholder and fills it: the text, stops and shared
    prefix must be exactly what building it with the context gives (the room is measured on the frame)."""
    from chatqa.prompting import PLACE, Frame

    def render(messages: list[dict[str, str]]) -> str:  # a chat template's shape, for the chat format
        return "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages) + "<|assistant|>\n"

    history = [{"role": "user", "content": "Who built it?"}, {"role": "assistant", "content": "Wrenfield."}]
    render_chat = render if fmt == "chat" else None
    frame = Frame.around(build_prompt(fmt, PLACE, "And when?", history, decline, render_chat), ["</s>"])
    for context in ["The canal opened in 1794.\n\nIt closed in 1921.", ""]:
        built = build_prompt(fmt, context, "And when?", history, decline, render_chat)
        filled = frame.fill(context)
        assert filled.text == built.text
        assert filled.stop == [*built.stop, "</s>"]
        if context:
            assert filled.context_chars == built.context_chars


def test_a_template_frame_fills_every_context_placeholder_and_keeps_its_prefix() -> None:
    from chatqa.prompting import PLACE, Frame

    template = "Read:\n{context}\nQ: {input}\nA:"
    frame = Frame.around(fill_template(template, PLACE, "q {context}"))
    assert frame.fill("doc").text == fill_template(template, "doc", "q {context}").text
    assert frame.fill("doc").context_chars == fill_template(template, "doc", "q").context_chars
    no_context = Frame.around(fill_template("Q: {input}", PLACE, "q"))
    assert no_context.fill("doc").text == "Q: q" and no_context.fill("doc").context_chars == 0
