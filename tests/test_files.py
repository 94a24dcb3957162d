"""write_atomic: the target is either the old file or the whole new one, and no temporary file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatqa.files import write_atomic


def test_text_and_bytes_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_atomic(target, "first\n")
    write_atomic(target, "zweite Zeile \u00e9\n")
    assert target.read_text(encoding="utf-8") == "zweite Zeile \u00e9\n"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old report\n", encoding="utf-8")
    with pytest.raises(TypeError):
        write_atomic(target, ["not", "text"])  # type: ignore[arg-type]  # fails after the temp file is open
    assert target.read_text(encoding="utf-8") == "old report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_missing_folder_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no-such-folder" / "x.json", "{}")
