"""Statistics, run-folder bookkeeping and ``eval score`` input checks (issue 10 items 13-14, issue 11 items 7, 12).

Pure logic on hand-written rows: no model is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatqa.config import load_profile
from chatqa.errors import InputError
from chatqa.evaluation import rundir
from chatqa.evaluation.report import _by_mode_length, compare, dedupe, score_predictions, summarize, write_report
from chatqa.evaluation.stats import bootstrap_ci, paired_difference, score_interval
from chatqa.evaluation.suites import SuiteOptions, load_suite

ROOT = Path(__file__).resolve().parents[2]


def row(i: int, mode: str, score: float | None, task: str = "passkey", length: int = 4096, **kw: object) -> dict:
    return {"id": f"s{i}", "task": task, "mode": mode, "length": length, "route": kw.pop("route", mode),
            "error": kw.pop("error", None), "score": score, "reused": False, "input_tokens": 10, "output_tokens": 1,
            "seconds": {"total": 1.0, "prefill": 0.5}, "compute_seconds": 1.0, **kw}  # fmt: skip


def test_bootstrap_interval() -> None:
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([100.0] * 10) == (100.0, 100.0)
    lo, hi = bootstrap_ci([0.0, 100.0] * 5)
    assert 0.0 < lo < 50.0 < hi < 100.0  # n=10 at 50%: roughly 20..80
    assert bootstrap_ci([0.0, 100.0] * 5) == (lo, hi)  # seeded: reports rebuild identically


def test_binary_cells_get_a_wilson_interval_not_a_degenerate_bootstrap() -> None:
    lo, hi = score_interval([100.0, 100.0])  # 2 of 2 correct: Wilson [34.2, 100], not [100, 100]
    assert lo == pytest.approx(34.24, abs=0.01) and hi == 100.0
    assert score_interval([50.0, 100.0]) == bootstrap_ci([50.0, 100.0])  # F1-like values: bootstrap


def test_paired_difference_uses_only_common_samples() -> None:
    a, b = {"1": 100.0, "2": 100.0, "3": 0.0}, {"1": 0.0, "2": 100.0, "3": 0.0, "4": 100.0}
    d = paired_difference(a, b)
    assert d["n"] == 3 and d["diff"] == pytest.approx(33.33) and d["wins"] == 1 and d["losses"] == 0
    assert d["inside_noise"]  # one win in three pairs
    strong = paired_difference({str(i): 100.0 for i in range(30)}, {str(i): 0.0 for i in range(30)})
    assert not strong["inside_noise"] and strong["ci95"] == [100.0, 100.0]


def test_cells_carry_n_interval_and_counts() -> None:
    rows = [row(i, "long", 1.0) for i in range(3)] + [row(3, "long", None, route="refused"),
                                                     row(4, "long", 0.0, error="boom")]  # fmt: skip
    (g,) = summarize(rows, ["long"])
    assert (g["n"], g["n_scored"], g["refused"], g["errors"]) == (5, 4, 1, 1)
    assert g["score"] == 75.0 and g["ci95"] == [pytest.approx(30.06, abs=0.01), pytest.approx(95.44, abs=0.01)]


def test_comparisons_are_paired_and_auto_is_compared_with_the_best_single_route() -> None:
    rows = [row(i, "rag", 1.0) for i in range(4)] + [row(i, "long", float(i < 2)) for i in range(4)]
    rows += [row(i, "auto", 1.0) for i in range(3)]  # auto ran on 3 samples only
    comps = {(c["a"], c["b"], c["length"]): c for c in compare(rows, ["rag", "long", "auto"])}
    rag_long = comps[("rag", "long", None)]
    assert rag_long["n"] == 4 and rag_long["diff"] == 50.0 and rag_long["wins"] == 2
    auto = comps[("auto", "rag", None)]  # rag is the better single route
    assert auto["n"] == 3 and auto["diff"] == 0.0 and auto["inside_noise"]


def test_plots_average_only_over_tasks_where_every_mode_ran() -> None:
    rows = [row(0, "rag", 1.0, task="a"), row(0, "long", 1.0, task="a"),
            row(0, "rag", 0.0, task="b"), row(0, "long", None, task="b", route="refused")]  # fmt: skip
    score = _by_mode_length(summarize(rows, ["rag", "long"]), "score")
    # task b has no long score at this length, so neither mode averages it in
    assert score == {("rag", 4096): 100.0, ("long", 4096): 100.0}


def test_duplicate_rows_count_once() -> None:
    rows = [row(0, "rag", 1.0), row(0, "rag", 0.0), row(1, "rag", 1.0)]
    kept, dropped = dedupe(rows)
    assert dropped == 1 and [r["score"] for r in kept] == [1.0, 1.0]


# --------------------------------------------------------------------------------------- run folders


def _prepare(out: Path, template_set: str = "infinitebench/yarn-mistral+raw", effective: int = 2048) -> Path:
    spec, cfg = load_suite("passkey"), load_profile("default")
    cfg.generator.effective_window = effective
    opts = SuiteOptions(lengths=[1024], depths=[0.5], n=1)
    ask = {"top_k": 5, "truncate": None, "template_set": template_set}
    run = rundir.run_path(out, spec, cfg, ["rag"], opts, ask)
    return rundir.prepare(run, spec, cfg, ["rag"], opts, ask, "chatqa eval run --suite passkey")


def test_config_records_every_invocation_with_profile_and_template_set(tmp_path: Path) -> None:
    run = _prepare(tmp_path, effective=2048)
    _prepare(tmp_path, effective=4096)  # a resume after calibration changed the effective window
    config = json.loads((run / "config.json").read_text())
    assert config["template_set"] == "infinitebench/yarn-mistral+raw"
    windows = [i["profile"]["generator"]["effective_window"] for i in config["invocations"]]
    assert windows == [2048, 4096] and all(i["template_set"] for i in config["invocations"])
    with pytest.raises(InputError, match="template_set"):
        _prepare(tmp_path, template_set="infinitebench/gpt4+model-chat-template")  # other prompts: no mixing


def test_a_second_run_into_the_same_folder_fails_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with rundir.lock(run):
        with pytest.raises(InputError) as err, rundir.lock(run):
            pass
        assert "in use by another `chatqa eval run`" in str(err.value) and "\n" not in str(err.value)
    with rundir.lock(run):  # released on exit
        pass


def test_report_of_a_doubled_rows_file_counts_each_sample_once(tmp_path: Path) -> None:
    run = _prepare(tmp_path)
    lines = [json.dumps(row(i, "rag", 1.0)) for i in range(2)]
    (run / "rows.jsonl").write_text("\n".join(lines * 2) + "\n")  # what two concurrent runs used to write
    summary = write_report(run)
    assert summary["rows"] == 2 and summary["duplicates_dropped"] == 2 and summary["groups"][0]["n"] == 2


# ----------------------------------------------------------------------------------------- eval score


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('["a list", "not a row"]\n', "line 1: a row must be a JSON object"),
        ('{"prediction": null, "ground_truth": "1"}\n', "line 1: prediction must be a string, got null"),
        ('{"ground_truth": "1"}\n', "prediction missing"),
        ("", "no rows"),
        ("\n\n", "no rows"),
        ("{not json\n", "line 1: not a JSON row"),
    ],
)
def test_score_rejects_malformed_prediction_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "preds_passkey.jsonl").write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        score_predictions(tmp_path)


def test_score_cli_says_no_rows_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "preds_passkey.jsonl").write_text("")
    out = subprocess.run([sys.executable, "-m", "chatqa.cli", "eval", "score", "--preds", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 2 and out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("chatqa: error: ") and "no rows" in out.stderr


def test_variant_is_rejected_where_a_suite_has_none() -> None:
    from chatqa.evaluation.suites import resolve_options

    with pytest.raises(InputError, match="no prompt variants"):
        resolve_options(load_suite("ruler-squad"), SuiteOptions(variant="longchat"))
    with pytest.raises(InputError, match="unknown InfiniteBench variant"):
        resolve_options(load_suite("passkey"), SuiteOptions(variant="longchat"))
    assert resolve_options(load_suite("longeval-lines"), SuiteOptions()).variant == "longchat"


def test_rescore_applies_the_current_scorer_to_stored_predictions(tmp_path: Path) -> None:
    from chatqa.evaluation.report import rescore

    run = _prepare(tmp_path)
    stale = row(0, "rag", 0.0, prediction="The pass key is 71432.", gold="71432")  # scored by an older scorer
    kept = row(1, "rag", 1.0, prediction="71432", gold="71432")
    (run / "rows.jsonl").write_text(json.dumps(stale) + "\n" + json.dumps(kept) + "\n")
    assert rescore(run) == 1
    rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [1.0, 1.0] and rows[0]["score_before"] == 0.0 and "score_before" not in rows[1]


def test_gold_in_context_uses_the_suites_containment_rule() -> None:
    from chatqa.evaluation.metrics import gold_in_context

    assert gold_in_context("qa:contains", "'Dinah'll miss me very much to-night!'", ["Dinah"]) is True
    assert gold_in_context("qa:contains", "The bridge has eleven arches.", ["11"]) is True  # number words
    assert gold_in_context("qa:contains", "Alice's cat", ["Dinah"]) is False
    assert gold_in_context("qa:contains", "anything", []) is None  # not in the book: nothing to find
    assert gold_in_context("chatrag:quac", "anything", ["anything"]) is None  # F1: containment says nothing


def test_rag_context_split_separates_retrieval_misses_from_reading_misses(tmp_path: Path) -> None:
    rows = [row(0, "rag", 1.0, gold_in_context=True), row(1, "rag", 0.0, gold_in_context=True),
            row(2, "rag", 1.0, gold_in_context=True), row(3, "rag", 0.0, gold_in_context=False),
            row(4, "rag", 0.0), row(5, "long", 1.0)]  # fmt: skip  # s4: not checked (e.g. not in the book)
    rag, long = summarize(rows, ["rag", "long"])
    assert rag["n_context_checked"] == 4 and rag["gold_in_context"] == 75.0
    assert rag["score_gold_in"] == pytest.approx(66.67, abs=0.01) and rag["score_gold_out"] == 0.0
    assert long["n_context_checked"] == 0 and long["gold_in_context"] is None and long["score_gold_in"] is None
    run = _prepare(tmp_path)
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["mode"] == "rag"))
    (line,) = write_report(run)["context"]
    assert line["mode"] == "rag" and line["gold_in_context"] == 75.0
    assert line["gold_in_context_ci95"] == [pytest.approx(30.06, abs=0.01), pytest.approx(95.44, abs=0.01)]
    report = (run / "report.md").read_text()
    assert "Retrieval vs reading" in report and "| rag | 4 | 75.0% [30.1, 95.4] | 66.7 | 0.0 |" in report


def test_context_fields_read_the_cited_chunks_only() -> None:
    from chatqa.chunking import Chunk
    from chatqa.evaluation.runner import context_fields

    class StubChunkSource:
        """Stands in for ChatQA.chunks only (pure logic: no model, no generator)."""

        def chunks(self, docs: list) -> list[Chunk]:
            return [Chunk(i, 0, "d", 0, 1, i + 1, i + 1, 3, text) for i, text in
                    enumerate(["The engineer was Josiah Wrenfield.", "Tobias Quill kept the light."])]  # fmt: skip

    cite, src = [{"chunk": 0, "doc": "d", "lines": [1, 1]}], StubChunkSource()
    assert context_fields(src, None, cite, "qa:contains", ["Josiah Wrenfield"]) == {"gold_in_context": True}
    assert context_fields(src, None, cite, "qa:contains", ["Tobias Quill"]) == {"gold_in_context": False}
    assert context_fields(src, None, cite, "qa:contains", []) == {}


def test_compare_runs_pairs_two_folders_on_common_samples(tmp_path: Path) -> None:
    from chatqa.evaluation.report import compare_runs

    a, b = _prepare(tmp_path / "a"), _prepare(tmp_path / "b")
    rows_a = [row(i, "rag", 1.0, gold=["x"]) for i in range(4)] + [row(4, "rag", 1.0, gold=[])]
    rows_b = [row(i, "rag", 1.0 if i == 0 else 0.0, gold=["x"]) for i in range(4)] + [row(4, "rag", 0.0, gold=[])]
    rows_b.append(row(9, "rag", 1.0, gold=["x"]))  # only in B: not paired
    for run, rows in ((a, rows_a), (b, rows_b)):
        (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = compare_runs(a, b, "rag")
    assert c["all"]["paired"]["n"] == 5 and c["all"]["paired"]["diff"] == 80.0 and c["all"]["paired"]["wins"] == 4
    assert c["answerable"]["paired"]["n"] == 4 and c["answerable"]["a"]["score"] == 100.0
    low, high = c["answerable"]["b"]["ci95"]
    assert c["answerable"]["b"]["score"] == 25.0 and low < 25.0 < high
    assert c["a"]["median_seconds"] == 1.0 and c["tasks"]["passkey"]["paired"]["n"] == 5
    with pytest.raises(InputError, match="no long rows"):
        compare_runs(a, b, "long")
    cli = [sys.executable, "-m", "chatqa.cli", "eval", "compare"]
    out = subprocess.run([*cli, str(a), str(b)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "| answerable | 4 | 100.0 [" in out.stdout and "+75.0 [" in out.stdout
    bad = subprocess.run([*cli, str(a), str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a run folder" in bad.stderr
