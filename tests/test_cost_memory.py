"""Memory per configuration means the configuration's memory: a fresh worker's peak is its
own (not its parent's), and its increment over the empty worker leaves out what it never
imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from frugalrec.bench.configs import add_increment
from frugalrec.bench.profiler import heavy_modules_loaded, process_peak_rss_bytes

PEAK = "from frugalrec.bench.profiler import process_peak_rss_bytes as p; print(p())"


def _child_peak_mb(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    return int(out.strip().splitlines()[-1]) / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_worker_does_not_inherit_its_parents_peak():
    """ru_maxrss survives exec on Linux: a worker forked by a process holding 300 MB used to
    report >= 300 MB. VmHWM belongs to the worker's own image."""
    ballast = np.ones(300 * 2**20 // 8)  # touched pages: real RSS in this (parent) process
    assert process_peak_rss_bytes() / 2**20 > 300
    child = _child_peak_mb(PEAK)
    assert child < 200, f"child reported {child:.0f} MB, its parent holds 300+ MB"
    del ballast


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_an_import_shows_in_the_peak_of_the_process_that_made_it():
    bare = _child_peak_mb(PEAK)
    numpy_400 = _child_peak_mb("import numpy as np; a = np.ones(50 * 2**20); " + PEAK)
    assert numpy_400 - bare > 350  # 400 MB of float64 ones


def test_increment_is_peak_over_the_empty_worker():
    cost = add_increment({"peak_rss_mb": 250.0}, {"peak_rss_mb": 180.0})
    assert cost["rss_increment_mb"] == pytest.approx(70.0)
    assert cost["baseline_rss_mb"] == 180.0
    # noise can put a tiny configuration a few MB under the empty worker: no negative memory
    assert add_increment({"peak_rss_mb": 178.0}, {"peak_rss_mb": 180.0})["rss_increment_mb"] == 0


def test_heavy_modules_are_named():
    mods = heavy_modules_loaded()
    assert all(m in sys.modules for m in mods)


@pytest.mark.slow
def test_pop_increment_leaves_out_torch(tmp_path):
    """``pop`` imports no encoder: its worker has no torch, and its increment over the empty
    worker is far below what importing torch alone costs."""
    from frugalrec.bench.configs import run_baseline_subprocess, run_config_subprocess
    from frugalrec.pipeline.config import PipelineConfig

    base = run_baseline_subprocess("ml-100k")
    res = run_config_subprocess(PipelineConfig(model="pop"), "ml-100k", quick=True)
    cost = add_increment(res["cost"], base)
    assert "torch" not in cost["heavy_modules"]
    torch_mb = _child_peak_mb("import torch; " + PEAK) - _child_peak_mb(PEAK)
    assert torch_mb > 100
    assert cost["rss_increment_mb"] < torch_mb
    json.dumps(cost)
