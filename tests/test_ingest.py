from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from pathlib import Path

import pytest

from chatqa.errors import InputError
from chatqa.ingest import Document, load_documents, printable, read_sources


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
    with pytest.raises(InputError, match="folder has no .txt, .md"):
        read_sources([str(tmp_path)])


# -- issue 11, item 9: empty paths and wrong types -------------------------------------------------------------
@pytest.mark.parametrize("source", ["", "   "])
def test_an_empty_path_is_rejected_not_read_as_the_working_directory(tmp_path: Path, monkeypatch, source) -> None:
    (tmp_path / "private.txt").write_text("a secret that must not be indexed")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="empty path"):
        read_sources([source])
    with pytest.raises(InputError, match="empty path"):
        load_documents(source)


@pytest.mark.parametrize("docs", [b"raw bytes", [b"raw bytes"], 42, None])
def test_a_document_of_the_wrong_type_is_a_clear_type_error(docs) -> None:
    with pytest.raises(TypeError, match="path, a Document") as err:
        load_documents(docs)
    assert isinstance(err.value, InputError)  # the CLI prints it as one line, the library can catch TypeError


def test_load_documents_accepts_paths_documents_and_lists(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("alpha")
    mem = Document.from_text("beta", name="mem")
    docs = load_documents([f, str(f), mem])
    assert [d.text for d in docs] == ["alpha", "alpha", "beta"]
    assert load_documents(mem) == [mem]


# -- issue 11, item 10: encodings, non-regular files, names with control characters -------------------------------
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_bom_are_decoded(tmp_path: Path, codec: str) -> None:
    f = tmp_path / "wide.txt"
    body = "Café au lait\r\nsecond line\n"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(codec, b"")
    f.write_bytes(bom + body.encode(codec))
    (doc,) = read_sources([str(f)])
    assert doc.text == "Café au lait\nsecond line\n"
    assert doc.encoding.startswith("utf-")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(read_sources, [str(fifo)])
        try:
            job.result(timeout=10)
        except InputError as exc:
            assert "not a regular file" in str(exc)
        except TimeoutError:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # release the blocked reader, then fail
            os.close(fd)
            pytest.fail("reading a FIFO blocked")
        else:
            pytest.fail("a FIFO was read as a document")


def test_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        read_sources(["/dev/null"])


def test_latin1_fallback_says_so_once(tmp_path: Path, capsys) -> None:
    f = tmp_path / "old.txt"
    f.write_bytes("caf\xe9 au lait".encode("latin-1"))
    read_sources([str(f)])
    read_sources([str(f)])
    err = capsys.readouterr().err
    assert err.count("latin-1") == 1 and "old.txt" in err and err.endswith("\n") and err.count("\n") == 1


def test_printable_escapes_control_characters_in_names() -> None:
    assert printable("ok name é.txt") == "ok name é.txt"
    assert printable("a\nb\tc\x1b[31m.txt") == "a\\nb\\tc\\x1b[31m.txt"
    assert "\n" not in printable("x\r\n\u2028y")
