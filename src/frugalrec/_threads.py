"""The one place where thread pools are sized.

BLAS (OpenBLAS/MKL via numpy and scipy), OpenMP, torch and our own pools all default to
"every core". On a 2-core box running them side by side oversubscribes the CPU and makes
timings meaningless, so every entry point calls :func:`configure_threads` once and libraries
that bring their own pool (implicit, faiss, torch) are sized from :func:`thread_count`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_ENV_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_configured: int | None = None


def default_thread_count() -> int:
    """Threads to use: ``FRUGALREC_THREADS`` if set, else the cores this process may use."""
    env = os.environ.get("FRUGALREC_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError as exc:
            raise ValueError(f"FRUGALREC_THREADS must be a positive integer, got {env!r}") from exc
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def set_thread_env(n: int | None = None) -> int:
    """Set the thread env vars (effective only before numpy/torch load). Returns n."""
    n = n or default_thread_count()
    for var in _ENV_VARS:
        os.environ.setdefault(var, str(n))
    return n


def configure_threads(n: int | None = None) -> int:
    """Size BLAS, OpenMP and torch pools to ``n`` threads (default: all usable cores).

    Safe to call repeatedly; the last call wins. Returns the thread count in force.
    """
    global _configured
    n = set_thread_env(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    torch = _loaded_torch()
    if torch is not None:
        torch.set_num_threads(n)
    _configured = n
    return n


def thread_count() -> int:
    """The thread count set by :func:`configure_threads` (or the default)."""
    return _configured or default_thread_count()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while a library runs its own pool (implicit, faiss)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _loaded_torch():  # type: ignore[no-untyped-def]
    import sys

    # Only touch torch when something already imported it: importing it costs ~1 s.
    return sys.modules.get("torch")
