"""Split embedded models: joined from data-only packages found by their metadata, verified before use.

Most tests build small fake distributions (a dist-info with METADATA and RECORD beside a data file) in a temp
folder, so corrupt, missing and wrong-version parts are checked without touching the real 0.5-1 GB models; the
last test loads the real assembled default model.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from chatqa import weights
from chatqa.errors import ModelLoadError
from chatqa.weights import SplitModel, assemble


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def fake_dist(site: Path, name: str, version: str, payload: bytes, record_hash: str | None = None) -> Path:
    """An installed wheel as importlib.metadata sees it: <pkg>/data/part.bin listed in RECORD with its sha256."""
    pkg = name.replace("-", "_")
    info = site / f"{pkg}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    data = site / pkg / "data" / "part.bin"
    data.parent.mkdir(parents=True)
    data.write_bytes(payload)
    digest = record_hash if record_hash is not None else _b64(payload)
    (info / "RECORD").write_text(f"{pkg}/data/part.bin,sha256={digest},{len(payload)}\n{info.name}/RECORD,,\n")
    return data


PAYLOADS = [b"GGUF" + bytes(range(200)), b"middle part" * 50, b"the end"]


def fake_model(**over: object) -> SplitModel:
    whole = b"".join(PAYLOADS)
    fields: dict[str, object] = {
        "name": "fake-model",
        "filename": "fake.gguf",
        "version": "1.0",
        "parts": tuple((f"fakepart-{i}", "data/part.bin") for i in range(len(PAYLOADS))),
        "size": len(whole),
        "sha256": hashlib.sha256(whole).hexdigest(),
    }
    fields.update(over)
    return SplitModel(**fields)  # type: ignore[arg-type]


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    for i, payload in enumerate(PAYLOADS):
        fake_dist(folder, f"fakepart-{i}", "1.0", payload)
    return folder


def one_line(exc: pytest.ExceptionInfo[ModelLoadError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_joins_in_order_and_stamps(site: Path, tmp_path: Path) -> None:
    path = assemble(fake_model(), cache=tmp_path / "cache", path=[str(site)])
    assert path.read_bytes() == b"".join(PAYLOADS)
    assert path.with_name(path.name + ".verified").is_file()
    assert [p.name for p in path.parent.iterdir() if ".tmp" in p.name] == []


def test_a_stamped_file_is_not_rehashed_or_rejoined(site: Path, tmp_path: Path) -> None:
    """Later loads trust the size+mtime stamp: removing the packages does not matter once the file is built."""
    model = fake_model()
    first = assemble(model, cache=tmp_path / "cache", path=[str(site)])
    second = assemble(model, cache=tmp_path / "cache", path=[str(tmp_path / "empty")])
    assert second == first and second.read_bytes() == b"".join(PAYLOADS)


def test_a_changed_cached_file_is_rebuilt_with_one_notice(site: Path, tmp_path: Path, capsys) -> None:
    model = fake_model()
    path = assemble(model, cache=tmp_path / "cache", path=[str(site)])
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes and mtime: the stamp no longer matches
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    capsys.readouterr()
    again = assemble(model, cache=tmp_path / "cache", path=[str(site)])
    assert again.read_bytes() == b"".join(PAYLOADS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rebuilding" in err


def test_an_unstamped_good_file_is_hashed_once_and_kept(site: Path, tmp_path: Path) -> None:
    model = fake_model()
    path = assemble(model, cache=tmp_path / "cache", path=[str(site)])
    path.with_name(path.name + ".verified").unlink()
    assert assemble(model, cache=tmp_path / "cache", path=[str(tmp_path / "empty")]) == path
    assert path.with_name(path.name + ".verified").is_file()


def test_corrupt_part_names_its_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for i, payload in enumerate(PAYLOADS):
        fake_dist(site, f"fakepart-{i}", "1.0", payload)
    (site / "fakepart_1" / "data" / "part.bin").write_bytes(b"X" + PAYLOADS[1][1:])  # same size, bad bytes
    with pytest.raises(ModelLoadError) as exc:
        assemble(fake_model(), cache=tmp_path / "cache", path=[str(site)])
    message = one_line(exc)
    assert "fakepart-1==1.0" in message and "corrupt" in message
    assert not (tmp_path / "cache" / "models" / "fake.gguf").exists()
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir() if ".tmp" in p.name] == []


def test_missing_part_names_its_package(site: Path, tmp_path: Path) -> None:
    model = fake_model(parts=(*fake_model().parts, ("fakepart-9", "data/part.bin")))
    with pytest.raises(ModelLoadError) as exc:
        assemble(model, cache=tmp_path / "cache", path=[str(site)])
    assert "fakepart-9==1.0" in one_line(exc)


def test_wrong_version_is_refused(site: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as exc:
        assemble(fake_model(version="2.0"), cache=tmp_path / "cache", path=[str(site)])
    assert "fakepart-0 is 1.0, expected ==2.0" in one_line(exc)


def test_whole_file_checksum_is_checked(site: Path, tmp_path: Path) -> None:
    """Parts that each match their RECORD but join to the wrong file (a wrong pin) fail on the whole sha256."""
    with pytest.raises(ModelLoadError) as exc:
        assemble(fake_model(sha256="0" * 64), cache=tmp_path / "cache", path=[str(site)])
    message = one_line(exc)
    assert "fakepart-0..fakepart-2==1.0" in message
    assert not (tmp_path / "cache" / "models" / "fake.gguf").exists()


def test_unknown_embedded_name_is_one_line() -> None:
    with pytest.raises(ModelLoadError) as exc:
        weights.resolve("embedded:no-such-model")
    assert "qwen2.5-coder-0.5b" in one_line(exc)


def test_real_default_model_assembles_and_loads() -> None:
    """The shipped default from its six packages: verified, and llama.cpp reads it as Qwen2 with a chat template."""
    import llama_cpp

    path = weights.resolve("embedded:qwen2.5-coder-0.5b")
    assert os.path.getsize(path) == weights.SPLIT_MODELS["qwen2.5-coder-0.5b"].size
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        assert llm.metadata["general.architecture"] == "qwen2"
        assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    finally:
        llm.close()


def test_extras_named_in_errors_exist_under_a_name_every_pip_matches() -> None:
    """pip before 23.3 matches an extra's name literally, setuptools >= 69 writes it normalized (PEP 685): an
    extra like ``qwen1.5b`` is stored as ``qwen1-5b`` and old pip then installs nothing, with only a warning."""
    import re
    import tomllib

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name in extras:
        assert name == re.sub(r"[-_.]+", "-", name).lower(), f"extra {name!r} is not in PEP 685 normal form"
    for model in weights.SPLIT_MODELS.values():
        if model.extra:
            assert model.extra in extras
            assert set(extras[model.extra]) == {f"{p}=={model.version}" for p, _ in model.parts}
