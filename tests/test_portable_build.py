"""The set-up builds native code for any x86-64 CPU with AVX2, never for the build machine.

llama.cpp's default build detects the build machine's CPU; a build that found AVX-512/AMX on
one machine segfaulted on the next (issue 13). Two checks: no native CPU detection anywhere
in the set-up files, and the installed llama.cpp library itself carries no AVX-512 code
(its own feature report, in a subprocess, and a disassembly when objdump is at hand).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NATIVE = re.compile(
    r"-march=native|-mtune=native|-mcpu=native|GGML_NATIVE=(ON|1|TRUE|YES)\b|"
    r"GGML_AVX512\w*=(ON|1|TRUE|YES)\b|GGML_AMX\w*=(ON|1|TRUE|YES)\b|GGML_CPU_ALL_VARIANTS=ON",
    re.IGNORECASE,
)


def _setup_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in (ROOT / ".ci", ROOT / "scripts"):
        files += sorted(p for p in folder.rglob("*") if p.is_file())
    return [f for f in files if f.exists()]


def test_no_native_cpu_detection_in_the_set_up():
    files = _setup_files()
    assert ROOT / "Makefile" in files and len(files) > 3
    hits = []
    for f in files:
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if NATIVE.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == [], "native CPU detection in the set-up:\n" + "\n".join(hits)


def test_the_makefile_builds_llama_cpp_portably():
    make = (ROOT / "Makefile").read_text()
    args = re.search(r"^LLAMA_CMAKE_ARGS\s*:?=\s*(.+)$", make, re.MULTILINE)
    assert args, "the Makefile has no LLAMA_CMAKE_ARGS"
    flags = args.group(1).split()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags
    assert "-DGGML_AVX512=OFF" in flags
    # The flags reach the command that installs llama-cpp-python, which compiles it here
    # (never a wheel from pip's cache, which may be another machine's native build).
    logical = make.replace("\\\n", " ").splitlines()
    build = [ln for ln in logical if "pip install" in ln and "llama-cpp-python==" in ln]
    assert len(build) == 1, build
    assert 'CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)"' in build[0]
    assert "--no-cache-dir" in build[0] and "--no-binary llama-cpp-python" in build[0]


def _llama_lib() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        pytest.skip("llama-cpp-python is not installed (the llm extra)")
    return Path(spec.origin).parent / "lib"


def test_the_installed_llama_cpp_has_no_avx512_code():
    lib = _llama_lib()
    # In a subprocess: loading the library must not be able to take this test run down.
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    features = dict(re.findall(r"(\w+) = (\d+)", out))
    assert features.get("AVX2") == "1", out
    on = sorted(k for k, v in features.items() if v != "0" and k.startswith(("AVX512", "AMX")))
    assert on == [], f"llama.cpp was built with {on}: {out}"
    # The disassembly agrees: no instruction touches a 512-bit register anywhere.
    asm = _disassembly(sorted(lib.glob("*.so")))
    if asm is None:
        return
    for name, text in asm.items():
        assert "zmm" not in text, f"{name} holds AVX-512 code"
    cpu = [name for name in asm if name.startswith("libggml-cpu")]
    assert cpu and all("ymm" in asm[name] for name in cpu)  # and AVX2 code is there


def _disassembly(libs: list[Path]) -> dict[str, str] | None:
    """objdump -d of each library (None when objdump is not installed)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    assert libs
    out = {}
    for so in libs:
        out[so.name] = subprocess.run(
            [objdump, "-d", "--no-show-raw-insn", str(so)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    return out


def test_implicit_compiled_on_install_has_no_avx512_code():
    # implicit 0.7.3 has no wheel for this Python: pip compiles it here. Its CMake sets no
    # CPU flags (baseline x86-64); its dense algebra goes through numpy/scipy's OpenBLAS,
    # which picks its kernels at run time.
    spec = importlib.util.find_spec("implicit")
    if spec is None or spec.origin is None:
        pytest.skip("implicit is not installed")
    root = Path(spec.origin).parent
    asm = _disassembly(sorted(p for p in root.rglob("*.so") if "gpu" not in p.parts))
    if asm is None:
        pytest.skip("objdump is not installed")
    for name, text in asm.items():
        assert "zmm" not in text, f"{name} holds AVX-512 code"
