from __future__ import annotations

from pathlib import Path

import pytest

from chatqa.errors import InputError
from chatqa.ingest import read_sources


def test_utf8_bom_and_crlf_are_normalised(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9\r\nline two\r\n")
    (doc,) = read_sources([str(f)])
    assert doc.text == "café\nline two\n"
    assert doc.encoding == "utf-8"


def test_latin1_fallback_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "old.txt"
    f.write_bytes("caf\xe9 au lait".encode("latin-1"))
    (doc,) = read_sources([str(f)])
    assert doc.text == "café au lait"
    assert doc.encoding == "latin-1"


def test_folder_reads_text_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# B\nbee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    docs = read_sources([str(tmp_path)])
    assert [d.name for d in docs] == ["a.txt", "b.md"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"  \n\t\n", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary")],
)
def test_bad_files_raise_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "x.txt"
    f.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_sources([str(f)])
    assert "\n" not in str(err.value)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_sources([str(tmp_path / "missing.txt")])
    with pytest.raises(InputError, match="no document"):
        read_sources([])
    with pytest.raises(InputError, match="no .txt or .md"):
        read_sources([str(tmp_path)])
