"""Unit tests for chatqa.evaluation.metrics on hand-made edge cases, each pinning one rule of an official scorer."""

from __future__ import annotations

import pytest

from chatqa.evaluation import metrics as m
from chatqa.evaluation.metrics import (
    CHATRAG_REFUSAL,
    INFINITEBENCH_TASKS,
    METRICS,
    chatrag_f1,
    chatrag_normalize,
    chatrag_unanswerable_correct,
    convfinqa_hit,
    is_refusal,
    longeval_lines,
    longeval_topics,
    ruler_substring,
    score,
    score_infinitebench,
    squad_normalize,
    token_f1,
)

# ---------------------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------------------


def test_token_f1_counts_repeated_tokens_once_per_match():
    # 1 common token ("a"); precision 1/3, recall 1/1 -> F1 = 0.5
    assert token_f1(["a", "a", "b"], ["a"]) == pytest.approx(0.5)


def test_token_f1_empty_sides_score_zero():
    assert token_f1([], ["x"]) == 0.0
    assert token_f1(["x"], []) == 0.0


def test_squad_normalize_deletes_punctuation_and_articles():
    assert squad_normalize("The  well-known, AN apple!") == "wellknown apple"


def test_chatrag_normalize_turns_punctuation_into_spaces():
    assert chatrag_normalize("The well-known, AN apple!") == "well known apple"


# ---------------------------------------------------------------------------------------------------------
# InfiniteBench
# ---------------------------------------------------------------------------------------------------------


def test_tasks_cover_the_published_nine():
    assert set(INFINITEBENCH_TASKS) == {
        "passkey", "number_string", "kv_retrieval", "longbook_qa_eng", "longbook_sum_eng",
        "longbook_choice_eng", "longdialogue_qa_eng", "math_find", "code_debug",
    }  # fmt: skip


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown InfiniteBench task"):
        score_infinitebench("code_run_typo", "1", "1")


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        ("The pass key is 71432.", "71432", 1.0),
        ("71432", ["71432"], 1.0),  # list labels (later releases) are unwrapped
        ("Key 1: 71432", "71432", 0.0),  # only the FIRST run of digits counts
        ("714320", "71432", 0.0),  # a longer run is a different number
        ("", "71432", 0.0),
        ("no digits here", "71432", 0.0),
    ],
)
def test_passkey_first_digit_run(prediction, label, expected):
    assert score_infinitebench("passkey", prediction, label) == expected


def test_number_string_uses_the_same_rule():
    assert score_infinitebench("number_string", "Sequence: 3000077442.", "3000077442") == 1.0
    assert score_infinitebench("number_string", "1. 3000077442", "3000077442") == 0.0


UUID = "c14cb8ba-002b-43be-bdc7-8a83f0fe1ac8"


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (f'The value is: "{UUID}".', 1.0),
        (f"{{'{UUID}'}}", 1.0),
        (f"value:{UUID}!", 1.0),
        (f"value-{UUID}", 0.0),  # hyphen is not a separator: the token is longer than the UUID
        (UUID[:-1], 0.0),
        ("", 0.0),
    ],
)
def test_kv_retrieval_token_membership(prediction, expected):
    assert score_infinitebench("kv_retrieval", prediction, UUID) == expected


def test_longbook_qa_f1_best_over_references():
    # "the" dropped and punctuation deleted: exact match with the second reference.
    assert score_infinitebench("longbook_qa_eng", "The Hebrides!", ["an island", "the hebrides"]) == 1.0
    # partial overlap: pred {on, island}, gold {island}: P=1/2, R=1 -> 2/3
    assert score_infinitebench("longbook_qa_eng", "On an island.", ["island"]) == pytest.approx(2 / 3)
    assert score_infinitebench("longbook_qa_eng", "", ["island"]) == 0.0


def test_longbook_qa_deletes_punctuation_inside_words():
    # SQuAD deletes the hyphen ("wellknown"), so the gold split into two words does not match.
    assert score_infinitebench("longbook_qa_eng", "well-known", ["well known"]) == 0.0


def test_longbook_sum_is_rouge_lsum_over_newline_sentences():
    label = ["alpha beta gamma delta"]
    # Two output lines are two sentences: Lsum takes the union of their LCS hits, so the swap costs nothing.
    assert score_infinitebench("longbook_sum_eng", "gamma delta\nalpha beta", label) == pytest.approx(1.0)
    # The same words on one line are one sentence: LCS is 2 of 4 tokens (no sentence splitting is added).
    assert score_infinitebench("longbook_sum_eng", "gamma delta alpha beta", label) == pytest.approx(0.5)
    assert score_infinitebench("longbook_sum_eng", "", label) == 0.0


def test_longbook_sum_does_not_stem():
    assert score_infinitebench("longbook_sum_eng", "cats running", "cat run") == 0.0


CHOICE = ["Walking Georgie", "A"]


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("A. Walking Georgie", 1.0),
        ("  A", 1.0),  # stripped first
        ("B. Hall Farm", 0.0),
        ("Alain walks the dog", 1.0),  # upstream quirk: a leading capital A reads as option A
        ("Walking Georgie", 1.0),  # exact option text without the letter
        ("walking georgie", 0.0),  # ... but case-sensitive
        ("I think the answer is: A", 1.0),
        ("I think the answer is Walking Georgie, clearly", 1.0),
        ("My answer: C", 0.0),  # the first phrase found decides; no fall-through
        ("The correct option is A", 1.0),
        ("So the answer is:", 0.0),  # the output ends at the phrase
        ("I pick C here", 0.0),  # "I" is not a substring of "ABCD"; "C" is the first token that is
        ("my pick: A", 1.0),  # first token that is a substring of "ABCD"
        ("my pick: AB", 0.0),  # "AB" is a substring of "ABCD" but is not the letter
        ("my pick: D or A", 0.0),  # the first such token wins
        ("", 0.0),
        ("   ", 0.0),
    ],
)
def test_longbook_choice_parsing_order(prediction, expected):
    assert score_infinitebench("longbook_choice_eng", prediction, CHOICE) == expected


def test_longbook_choice_bare_letter_tokens():
    # "I" is not in "ABCD", "pick" neither, then "A": right. Documents the case above.
    assert score_infinitebench("longbook_choice_eng", "pick A", CHOICE) == 1.0
    assert score_infinitebench("longbook_choice_eng", "pick AB", ["x", "AB"]) == 1.0


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        ("Ace Rothstein", ["ACE", "ACE ROTHSTEIN"], 1.0),  # output upper-cased
        ('"Ace."', ["ACE"], 1.0),
        ("Rothstein", ["ACE", "ACE ROTHSTEIN"], 0.0),  # only label[0] counts
        ("Remo Gaggi", ["GAGGI", "Remo"], 1.0),
        ("Remo", ["GAGGI", "Remo"], 0.0),
        ("Aces", ["ACE"], 0.0),  # whole token only
        ("", ["ACE"], 0.0),
    ],
)
def test_longdialogue_first_name_token(prediction, label, expected):
    assert score_infinitebench("longdialogue_qa_eng", prediction, label) == expected


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        ("88", 88, 1.0),
        ("The largest number is: 91", 91, 1.0),
        ("Among 12 lists, 91", 91, 0.0),  # first number only
        ("-5", 5, 1.0),  # no sign handling upstream
        ("3.5", 3.5, 1.0),
        ("3.50", 3.5, 1.0),  # compared as floats
        ("3", 3.0, 1.0),
        ("3.5", 3, 0.0),  # upstream crashes here; we score it wrong
        ("", 7, 0.0),
        ("88", [88], 1.0),
    ],
)
def test_math_find_first_number(prediction, label, expected):
    assert score_infinitebench("math_find", prediction, label) == expected


def test_math_find_rejects_non_numeric_label():
    with pytest.raises(TypeError):
        score_infinitebench("math_find", "1", "1")


DEBUG = ["repack_carchive", "B"]


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("B. repack_carchive", 1.0),
        ("B: it is broken", 1.0),
        ("B repack_carchive", 0.0),  # needs "B." or "B:", and there is no answer phrase
        ("The answer is: B", 1.0),
        ("The function with the error is: repack_carchive", 1.0),  # "is:" then the function name
        ("The answer is: **Option B**", 1.0),  # stars and "Option" are stripped
        ("The answer is: C", 0.0),
        ("The answer is:", 0.0),
        ("I believe function B. repack_carchive has an error", 0.0),  # no phrase, no bare-letter fallback
        ("", 0.0),
    ],
)
def test_code_debug_parsing(prediction, expected):
    assert score_infinitebench("code_debug", prediction, DEBUG) == expected


# ---------------------------------------------------------------------------------------------------------
# ChatRAG Bench
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["I cannot find it.", "That is NOT MENTIONED in the text", "I don't know", "There is no answer"],
)
def test_is_refusal_detects_keyphrases(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["", "Paris", "He found it", "I do know"])
def test_is_refusal_ignores_answers(text):
    assert not is_refusal(text)


def test_chatrag_f1_punctuation_splits_words():
    # Space-replacement: "well-known" -> "well known" matches; SQuAD deletion would not.
    assert chatrag_f1("well-known", ["well known"]) == 1.0
    assert chatrag_f1("The answer.", "answer") == 1.0  # articles dropped, single str reference ok


def test_chatrag_f1_best_over_references_and_empty_output():
    assert chatrag_f1("in Paris", ["London", "Paris"]) == pytest.approx(2 / 3)
    assert chatrag_f1("", ["Paris"]) == 0.0
    assert chatrag_f1("Paris</s>", ["Paris"]) == 1.0


def test_chatrag_f1_skips_empty_references_and_leaves_all_empty_items_out():
    # get_scores.py / metrics.py: empty references are skipped; an item with none is left out of the mean.
    assert chatrag_f1("Paris", ["", "  ", "Paris"]) == 1.0
    assert chatrag_f1("Paris", ["", " "]) is None
    assert score("chatrag:quac", "Paris", ["", " "]) is None


def test_quac_refusal_mapping_gives_full_credit():
    pred = "I'm sorry, the context does not mention that."
    assert chatrag_f1(pred, [CHATRAG_REFUSAL], dataset="quac") == 1.0
    assert chatrag_f1(pred, [CHATRAG_REFUSAL], dataset="doqa_cooking") == 1.0
    # without dataset rules the paraphrase only overlaps by chance
    assert chatrag_f1(pred, [CHATRAG_REFUSAL]) < 0.5


def test_quac_maps_refusals_in_predictions_only():
    """get_scores.py maps keyphrases on predictions only: a gold answer that happens to contain "unable to" is
    an answer. Hand case: official F1 = 2 * (5/7) * (5/8) / (5/7 + 5/8) = 2/3."""
    gold = ["He was unable to finish the race in 1952."]
    assert chatrag_f1("he did not finish the race in 1952", gold, dataset="quac") == pytest.approx(2 / 3)
    assert chatrag_f1("he did not finish the race in 1952", gold, dataset="doqa_movies") == pytest.approx(2 / 3)
    # a refusing prediction still becomes the canonical refusal, which does not match that gold
    assert chatrag_f1("I don't know", ["The text does not say; not provided."], dataset="quac") < 0.3


def test_quac_refusal_on_answerable_turn_scores_zero():
    assert chatrag_f1("I cannot find the answer.", ["in 1983"], dataset="quac") == 0.0


def test_inscit_drops_the_extra_refusal_reference():
    refs = ["the blue one", CHATRAG_REFUSAL]
    assert chatrag_f1("Sorry. I cannot find the answer based on the context.", refs) == 1.0
    assert chatrag_f1("Sorry. I cannot find the answer based on the context.", refs, dataset="inscit") == 0.0


def test_unanswerable_accuracy():
    assert chatrag_unanswerable_correct("I can't answer that.", [CHATRAG_REFUSAL]) == 1.0
    assert chatrag_unanswerable_correct("It was 1983.", [CHATRAG_REFUSAL]) == 0.0
    assert chatrag_unanswerable_correct("It was 1983.", ["1983"]) == 1.0
    assert chatrag_unanswerable_correct("No information about that.", ["1983"]) == 0.0
    # upstream's gold test is "first answer == the canonical refusal": a raw QuAC marker is not one
    assert chatrag_unanswerable_correct("Unable to tell.", "CANNOTANSWER") == 0.0


@pytest.mark.parametrize(
    ("prediction", "gold", "formula", "question", "expected"),
    [
        ("The total is $1,234 million.", 1234, None, "what is the total?", 1.0),
        ("It changed by 0.144", 0.14352, None, "what is the change?", 1.0),  # rounded to 3 decimals
        ("It is about 0.14", 0.14352, None, "what is the change?", 1.0),  # rounded to 2 decimals
        ("It grew 14.35%", 0.14352, None, "what percent did it grow?", 1.0),  # percent form, 2 decimals
        ("It grew 14.35%", 0.14352, None, "how much did it grow?", 0.0),  # no "percent" in the question
        ("The answer is 80", 80.0, None, "q", 1.0),  # integral float written as int
        ("a decrease of 10 (2017)", -10, None, "q", 1.0),  # "(2017)" removed; |gold| after "decrease"
        ("a decrease of 10", -10.0, None, "q", 0.0),  # the float's magnitude is spelled "10.0"
        ("a decrease of 10.0", -10.0, None, "q", 1.0),
        ("it fell to 10.0", -10.0, None, "q", 0.0),  # no "decrease", and "-10.0" is absent
        ("subtract(5, 3)", 2, "subtract(5, 3)", "q", 0.0),  # commas removed from the output, not the formula
        ("subtract(5 3)", 2, "subtract(5 3)", "q", 1.0),
        ("", 2, None, "q", 0.0),
        ("anything", 2, "", "q", 0.0),  # an empty formula must not match everything
    ],
)
def test_convfinqa_hit(prediction, gold, formula, question, expected):
    assert convfinqa_hit(prediction, gold, formula=formula, question=question) == expected


def test_convfinqa_uses_python_float_spelling():
    # 0.14 * 100 == 14.000000000000002, which is never written; round(.., 1) and round(.., 2) give "14.0".
    # So "14.0" is a hit but "14" is not (0.14 does not end in ".0"): upstream's exact spellings.
    assert convfinqa_hit("14.0 percent", 0.14, question="what percent?") == 1.0
    assert convfinqa_hit("14 percent", 0.14, question="what percent?") == 0.0


# ---------------------------------------------------------------------------------------------------------
# LongEval
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "expected_number", "expected"),
    [
        ("The <REGISTER_CONTENT> in line torpid-kid is <2416>.", 2416, 1.0),
        ("Line 7 has 2416", 2416, 1.0),  # the LAST integer counts
        ("2416 is in line 7", 2416, 0.0),
        ("The value is 2,416.", 2416, 1.0),  # thousands separator read as one number (named deviation)
        ("Values: 12,345,678", 12345678, 1.0),
        ("Lines 2, 416", 416, 1.0),  # comma + space is a list, not a separator
        ("1,23", 23, 1.0),  # not a thousands group: two numbers
        ("", 2416, 0.0),
        ("I don't know", 2416, 0.0),
    ],
)
def test_longeval_lines_grouped_variant(prediction, expected_number, expected):
    assert longeval_lines(prediction, expected_number, numbers="grouped") == expected


@pytest.mark.parametrize(
    ("prediction", "expected_number", "expected"),
    [  # utils.py: int(re.findall("\\d+", output)[-1]) == expected_number
        ("The <REGISTER_CONTENT> in line torpid-kid is <2416>.", 2416, 1.0),
        ("Line 7 has 2416", 2416, 1.0),
        ("2416 is in line 7", 2416, 0.0),
        ("The value is 2,416.", 416, 1.0),  # upstream reads "416"
        ("The value is 2,416.", 2416, 0.0),
        ("", 2416, 0.0),
    ],
)
def test_longeval_lines_official_parsing(prediction, expected_number, expected):
    assert longeval_lines(prediction, expected_number) == expected
    assert score("longeval:lines", prediction, expected_number) == expected


@pytest.mark.parametrize(
    ("prediction", "topic", "expected"),
    [
        (
            "The first topic is the future of sustainable agriculture.",
            "the future of sustainable agriculture",
            1.0,
        ),
        ("FUTURE OF SUSTAINABLE AGRICULTURE!", "the future of sustainable agriculture", 1.0),
        ("sustainable agriculture", "the future of sustainable agriculture", 0.0),  # gold must be contained
        ("We discussed artificial intelligence", "art", 0.0),  # word boundaries only
        ("", "art", 0.0),
    ],
)
def test_longeval_topics_normalized_containment(prediction, topic, expected):
    assert longeval_topics(prediction, topic) == expected


def test_longeval_topics_rejects_empty_gold():
    with pytest.raises(ValueError):
        longeval_topics("anything", "the")


# ---------------------------------------------------------------------------------------------------------
# RULER
# ---------------------------------------------------------------------------------------------------------


def test_ruler_part_is_any_reference_case_insensitive():
    assert ruler_substring("The answer: PARIS, France", ["paris", "lyon"]) == 1.0
    assert ruler_substring("Lyon-ish", "paris") == 0.0
    assert ruler_substring("", ["x"]) == 0.0


def test_ruler_all_is_fraction_found():
    assert ruler_substring("12 and 34", ["12", "34", "56", "78"], mode="all") == 0.5


def test_ruler_control_characters_become_newlines():
    assert ruler_substring("a\x00b", ["a\nb"]) == 1.0


def test_ruler_rejects_bad_input():
    with pytest.raises(ValueError):
        ruler_substring("x", [])
    with pytest.raises(ValueError):
        ruler_substring("x", ["x"], mode="some")


# ---------------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------------


def test_registry_names():
    expected = {f"infinitebench:{t}" for t in INFINITEBENCH_TASKS} | {
        "chatrag:f1", "chatrag:quac", "chatrag:doqa", "chatrag:inscit", "chatrag:convfinqa",
        "chatrag:unanswerable", "longeval:lines", "longeval:topics", "ruler:substring", "ruler:substring_all",
        "qa:contains",
        "chatrag:doc2dial", "chatrag:qrecc", "chatrag:topiocqa", "chatrag:coqa", "chatrag:hybridial",
        "chatrag:doqa_cooking", "chatrag:doqa_travel", "chatrag:doqa_movies", "chatrag:sqa", "chatrag:narrativeqa",
    }  # fmt: skip
    assert set(METRICS) == expected


@pytest.mark.parametrize(
    ("metric", "prediction", "gold", "kw", "expected"),
    [
        ("infinitebench:passkey", "key 123", "123", {}, 1.0),
        ("infinitebench:longbook_choice_eng", "AB", ["x", "B"], {}, 0.0),
        ("chatrag:f1", "not mentioned", [CHATRAG_REFUSAL], {}, 0.0),
        ("chatrag:quac", "not mentioned", [CHATRAG_REFUSAL], {}, 1.0),
        ("chatrag:f1", "not mentioned", [CHATRAG_REFUSAL], {"dataset": "doqa_travel"}, 1.0),
        ("chatrag:convfinqa", "about 0.14", 0.1435, {"question": "q"}, 1.0),
        ("chatrag:unanswerable", "I don't know", [CHATRAG_REFUSAL], {}, 1.0),
        ("longeval:lines", "It is 2,416", "2416", {}, 0.0),
        ("longeval:lines", "It is 2,416", "2416", {"numbers": "grouped"}, 1.0),
        ("longeval:topics", "It was the cat", "cats", {}, 0.0),
        ("ruler:substring", "x y", ["y", "z"], {}, 1.0),
        ("ruler:substring", "x y", ["y", "z"], {"mode": "all"}, 0.5),
        ("ruler:substring_all", "x y", ["y", "z"], {}, 0.5),
    ],
)
def test_score_dispatch(metric, prediction, gold, kw, expected):
    assert score(metric, prediction, gold, **kw) == expected


def test_score_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", "a", "a")


def test_scores_are_floats_in_unit_interval():
    results = [score(name, "A. 1 2,416 x", _gold_for(name)) for name in METRICS]
    assert all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in results)


def _gold_for(name: str) -> object:
    """A plausible gold value for each metric, used only for the type/range check."""
    golds = {
        "infinitebench:longbook_choice_eng": ["x", "A"],
        "infinitebench:code_debug": ["f", "A"],
        "infinitebench:math_find": 1,
        "infinitebench:longbook_qa_eng": ["x"],
        "infinitebench:longdialogue_qa_eng": ["X"],
        "chatrag:convfinqa": 1.0,
        "longeval:lines": 2416,
    }
    return golds.get(name, "1")


def test_module_exports_exist():
    assert all(hasattr(m, name) for name in m.__all__)
