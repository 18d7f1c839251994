"""The generative LLM in its own process: a crash, a hang or an out-of-memory there is an
``LLMUnavailable`` here, never a dead server or a dead test run.

``WorkerLLM`` implements the ``LLM`` protocol of :mod:`frugalrec.llm.runtime` on the parent
side; every method call travels to a child interpreter (started with ``python -m
frugalrec.llm.worker``: a fresh process, never a fork of one that may hold threads) over two
pipes as one frame: a JSON header plus raw numpy buffers (logits are float32 [n, vocab]).
The child answers requests in order (a request queue), one at a time.

Failure handling, per call:

- the caller waits until its deadline (``LLM.deadline``, perf_counter seconds) plus
  ``reply_slack_s``; the child gets the same deadline as remaining seconds and aborts the
  forward pass there (llama.cpp's abort callback), so the budget holds;
- no answer by then: ``LLMTimeout`` (an ``LLMUnavailable`` and a ``TimeoutError``, reason
  ``timeout``); if the call the child is executing is still running ``hang_grace_s`` after
  its deadline (or ``call_timeout_s`` after it started, without a deadline) the child is
  killed;
- the child dies (a signal, an exit) or runs out of memory (``memory_limit_mb``, an
  address-space limit set in the child): every call in flight raises ``LLMUnavailable`` at
  once with ``worker_crash:SIGSEGV`` / ``worker_exit:1`` / ``oom``, and a new child is started
  in the background (immediately after one failure, with a growing pause after repeated
  ones); calls made while it loads wait for it until their deadline.

The child exits when the parent closes the pipe, and on its own when its parent process goes
away (so a SIGKILLed server leaves no orphan behind); ``close()`` runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import importlib
import itertools
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np

from frugalrec._config import JsonConfig
from frugalrec.llm.runtime import CallTiming, LLMTimeout, LLMUnavailable

log = logging.getLogger(__name__)

__all__ = ["LLMTimeout", "LLMUnavailable", "WorkerConfig", "WorkerLLM"]

_HEAD = struct.Struct("<II")  # header bytes, number of buffers
_BUF = struct.Struct("<Q")  # buffer bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerConfig(JsonConfig):
    """Seconds and limits of the worker process.

    ``start_timeout_s``: loading a model (Gemma assembles its parts on first use);
    ``call_timeout_s``: a call without a deadline is a hang after this; ``reply_slack_s``: how
    long past its deadline a caller waits for the answer (pipe and scheduling time);
    ``hang_grace_s``: how long past its deadline the running call may go before the child is
    killed; ``memory_limit_mb``: address-space limit of the child (0 = none; llama.cpp maps
    the model file, which counts); ``max_backoff_s``: longest pause between restarts after
    repeated failures.
    """

    start_timeout_s: float = 300.0
    call_timeout_s: float = 120.0
    reply_slack_s: float = 0.05
    hang_grace_s: float = 1.0
    memory_limit_mb: float = 0.0
    max_backoff_s: float = 60.0


# ---- frames: a JSON header and raw buffers ---------------------------------------------


def _encode(obj: Any) -> bytes:
    """One frame: numpy arrays anywhere in ``obj`` travel as raw buffers, not JSON."""
    bufs: list[bytes] = []

    def enc(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            bufs.append(a.tobytes())
            return {"__ndarray__": len(bufs) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, list | tuple):
            return [enc(x) for x in o]
        if isinstance(o, dict):
            return {str(k): enc(v) for k, v in o.items()}
        return o

    head = json.dumps(enc(obj)).encode("utf-8")
    parts = [_HEAD.pack(len(head), len(bufs)), head]
    for b in bufs:
        parts += [_BUF.pack(len(b)), b]
    return b"".join(parts)


def _read_exact(f: IO[bytes], n: int) -> bytes | None:
    data = f.read(n)
    if data is None or len(data) < n:
        return None
    return data


def _read_frame(f: IO[bytes]) -> Any:
    """The next frame's object, or None at end of stream."""
    raw = _read_exact(f, _HEAD.size)
    if raw is None:
        return None
    n_head, n_bufs = _HEAD.unpack(raw)
    head = _read_exact(f, n_head)
    if head is None:
        return None
    bufs: list[bytes] = []
    for _ in range(n_bufs):
        size = _read_exact(f, _BUF.size)
        if size is None:
            return None
        b = _read_exact(f, _BUF.unpack(size)[0])
        if b is None:
            return None
        bufs.append(b)

    def dec(o: Any) -> Any:
        if isinstance(o, dict):
            if "__ndarray__" in o:
                a = np.frombuffer(bufs[o["__ndarray__"]], dtype=np.dtype(o["dtype"]))
                return a.reshape(o["shape"]).copy()
            return {k: dec(v) for k, v in o.items()}
        if isinstance(o, list):
            return [dec(x) for x in o]
        return o

    return dec(json.loads(head))


def _write_frame(f: IO[bytes], obj: Any) -> None:
    f.write(_encode(obj))
    f.flush()


# ---- the child ---------------------------------------------------------------------------


def _resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    fn = importlib.import_module(module)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"worker target {target!r} is not callable")
    return fn  # type: ignore[return-value]


def _error(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)}


def _peak_rss_mb() -> float:
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _watch_parent(parent: int) -> None:
    # The request pipe's end-of-file stops the loop between calls; this also stops a child
    # busy in native code whose parent was killed (re-parented to init).
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _child(rfd: int, wfd: int, parent: int) -> int:
    """Serve requests from ``rfd`` until end-of-file: load the model named by the first
    frame, answer ``ready`` with its info, then one reply per request, in order."""
    import faulthandler

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it closes us
    faulthandler.enable()  # a native crash leaves its Python stack on stderr
    os.dup2(2, 1)  # nothing printed here can end up in the parent's stdout (--json output)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    rf, wf = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
    spec = _read_frame(rf)
    if spec is None:
        return 0
    if spec.get("memory_limit_mb"):
        import resource

        limit = int(spec["memory_limit_mb"] * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        llm = _resolve(spec["target"])(**spec["kwargs"])
        _write_frame(wf, {"id": 0, "ok": True, "result": _info(llm), "pid": os.getpid()})
    except BaseException as exc:  # reported to the parent, which raises it from load_llm
        _write_frame(wf, {"id": 0, **_error(exc)})
        return 1
    while True:
        req = _read_frame(rf)
        if req is None or req["method"] == "__close__":
            return 0
        _write_frame(wf, {"id": req["id"], **_answer(llm, req)})


def _info(llm: Any) -> dict[str, Any]:
    return {**llm.info(), "worker_pid": os.getpid(), "worker_peak_rss_mb": _peak_rss_mb()}


def _answer(llm: Any, req: dict[str, Any]) -> dict[str, Any]:
    method = req["method"]
    timings = getattr(llm, "timings", None)
    before = len(timings) if timings is not None else 0
    timeout = req.get("timeout")
    llm.deadline = None if timeout is None else time.perf_counter() + timeout
    try:
        if method == "info":
            result = _info(llm)
        elif method.startswith("_") or not callable(getattr(llm, method, None)):
            raise AttributeError(f"{type(llm).__name__} has no method {method!r}")
        else:
            result = getattr(llm, method)(*req["args"], **req["kwargs"])
        out: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:  # the child survives a Python error; the parent re-raises it
        out = _error(exc)
    finally:
        llm.deadline = None
    if timings is not None:
        out["timings"] = [t.to_dict() for t in timings[before:]]
        del timings[:]  # the parent keeps them; a long-running child must not grow
    return out


# ---- the parent --------------------------------------------------------------------------


@dataclasses.dataclass
class _Pending:
    """One request in flight: when it was sent, its deadline, and its outcome."""

    id: int
    sent: float
    deadline: float | None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    reply: dict[str, Any] | None = None
    failure: str | None = None


def _signal_reason(code: int | None) -> str:
    if code is None:
        return "worker_crash:unknown"
    if code < 0:
        try:
            return f"worker_crash:{signal.Signals(-code).name}"
        except ValueError:
            return f"worker_crash:signal{-code}"
    return f"worker_exit:{code}"


class _Process:
    """One child process: its pipes, the requests in flight, a reader and a watchdog."""

    def __init__(self, spec: dict[str, Any], config: WorkerConfig, on_death: Callable) -> None:
        self.config = config
        self._on_death = on_death
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = dict(os.environ)
        # The child imports what this process imports (a source checkout on sys.path, the
        # test directory under pytest), not only what is installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        cmd = [sys.executable, "-m", "frugalrec.llm.worker", str(req_r), str(rep_w)]
        cmd.append(str(os.getpid()))
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.pid = self.proc.pid
        self._w = os.fdopen(req_w, "wb")
        self._r = os.fdopen(rep_r, "rb")
        # Two locks: the reader only ever takes ``_lock`` (state), so a writer blocked on a
        # full request pipe never stops the replies that would let the child read on.
        self._lock = threading.Lock()  # pending, head_since, dead, kill reason
        self._wlock = threading.Lock()  # request ids and writes, in the same order
        self._ids = itertools.count(1)
        self.pending: dict[int, _Pending] = {}
        self.head_since = time.perf_counter()  # when the oldest request began executing
        self.ready = threading.Event()
        self.info: dict[str, Any] = {}
        self.load_error: dict[str, Any] | None = None
        self.dead = False
        self.death_reason: str | None = None
        self._kill_reason: str | None = None
        self._stop = threading.Event()
        _write_frame(self._w, spec)
        threading.Thread(target=self._read, daemon=True, name=f"llm-worker-{self.pid}").start()
        threading.Thread(target=self._watch, daemon=True, name=f"llm-watch-{self.pid}").start()

    # -- requests
    def submit(self, method: str, args: Sequence[Any], kwargs: dict[str, Any],
               deadline: float | None) -> _Pending:  # fmt: skip
        now = time.perf_counter()
        timeout = None if deadline is None else max(0.0, deadline - now)
        with self._wlock:
            with self._lock:
                if self.dead:
                    raise LLMUnavailable(self.death_reason or "worker_crash:unknown")
                p = _Pending(next(self._ids), now, deadline)
                if not self.pending:
                    self.head_since = now
                self.pending[p.id] = p
            frame = {"id": p.id, "method": method, "args": list(args), "kwargs": kwargs,
                     "timeout": timeout}  # fmt: skip
            try:
                _write_frame(self._w, frame)
            except (OSError, ValueError):  # the child is gone; the reader says why
                pass
        return p

    def kill(self, reason: str) -> None:
        """SIGKILL the child; the calls in flight fail with ``reason``."""
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = reason
        try:
            self.proc.kill()
        except OSError:
            pass

    def close(self, timeout: float = 2.0) -> None:
        """Ask the child to exit (end of its request pipe), then make sure it did."""
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = "closed"
        # A child that stopped reading (hung) leaves a writer blocked: then it is killed.
        if self._wlock.acquire(timeout=timeout):
            try:
                _write_frame(self._w, {"id": -1, "method": "__close__"})
                self._w.close()
            except (OSError, ValueError):
                pass
            finally:
                self._wlock.release()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()

    # -- threads
    def _read(self) -> None:
        first = True
        while True:
            try:
                msg = _read_frame(self._r)
            except (OSError, ValueError, json.JSONDecodeError):
                msg = None
            if msg is None:
                break
            if first:
                first = False
                if msg.get("ok"):
                    self.info = msg["result"]
                else:
                    self.load_error = msg
                self.ready.set()
                continue
            with self._lock:
                p = self.pending.pop(msg["id"], None)
                self.head_since = time.perf_counter()
            if p is not None:
                p.reply = msg
                p.done.set()
        try:
            code = self.proc.wait(5.0)
        except subprocess.TimeoutExpired:  # pipe closed but still alive: it is unusable
            self.proc.kill()
            code = self.proc.wait()
        with self._lock:
            self.dead = True
            reason = self._kill_reason or _signal_reason(code)
            self.death_reason = reason
            failed = list(self.pending.values())
            self.pending.clear()
        self._stop.set()
        try:
            self._r.close()
        except OSError:
            pass
        for p in failed:
            p.failure = reason
            p.done.set()
        self.ready.set()
        self._on_death(self, reason)

    def _watch(self) -> None:
        """Kill the child when the call it is executing runs past its deadline plus
        ``hang_grace_s`` (or ``call_timeout_s`` without a deadline): it ignored the abort."""
        cfg = self.config
        while not self._stop.wait(0.05):
            with self._lock:
                if not self.pending:
                    continue
                head = self.pending[min(self.pending)]
                if head.deadline is not None:
                    kill_at = max(head.deadline, self.head_since) + cfg.hang_grace_s
                else:
                    kill_at = self.head_since + cfg.call_timeout_s
            if time.perf_counter() > kill_at:
                log.warning("LLM worker %d: a call ran past its deadline; killing it", self.pid)
                self.kill("timeout")
                return


class WorkerLLM:
    """The ``LLM`` protocol over a worker process (see the module docstring).

    ``target``: ``"module:callable"`` that builds the model in the child from ``kwargs``
    (``frugalrec.llm.runtime:load_llm`` with ``in_process=True`` for the packaged models).
    Construction blocks until the model is loaded and raises what loading raised (a missing
    package is a ``FileNotFoundError`` as in process) or ``LLMUnavailable`` if the child
    died while loading. Thread-safe: concurrent calls queue in the child.
    """

    def __init__(
        self,
        target: str,
        kwargs: dict[str, Any] | None = None,
        config: WorkerConfig | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config or WorkerConfig()
        self._spec: dict[str, Any] = {
            "target": target,
            "kwargs": dict(kwargs or {}),
            "memory_limit_mb": self.config.memory_limit_mb,
        }
        self.name = name or str(self._spec["kwargs"].get("name", target))
        self.runtime = str(self._spec["kwargs"].get("runtime", "worker"))
        self.timings: list[CallTiming] = []
        self.deadline: float | None = None
        self.restarts = 0
        self.failures: dict[str, int] = {}  # reason -> count, since start
        self.last_failure: str | None = None
        self.last_restart_s: float | None = None  # death -> ready of the last restart
        self._cond = threading.Condition()
        self._closed = False
        self._restarting = False
        self._consecutive = 0  # failures since the last answered call
        self._proc: _Process | None = None
        proc = self._spawn()
        if not proc.ready.wait(self.config.start_timeout_s) or proc.dead:
            reason = proc.death_reason or "start_timeout"
            proc.kill(reason)
            raise LLMUnavailable(reason, f"the LLM worker did not load {self.name}")
        if proc.load_error is not None:
            proc.close()
            raise _rebuild(proc.load_error)
        self._proc = proc
        atexit.register(self.close)

    # -- lifecycle
    def _spawn(self) -> _Process:
        return _Process(self._spec, self.config, self._died)

    def _died(self, proc: _Process, reason: str) -> None:
        with self._cond:
            if proc is not self._proc or self._closed:
                return
            self._proc = None
            self._note_failure(reason)
            died_at = time.perf_counter()
            log.warning("LLM worker %d failed (%s); restarting it", proc.pid, reason)
            if not self._restarting:
                self._restarting = True
                threading.Thread(
                    target=self._restart, args=(died_at,), daemon=True, name="llm-restart"
                ).start()
            self._cond.notify_all()

    def _note_failure(self, reason: str) -> None:
        # Called with the condition held.
        self.last_failure = reason
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self._consecutive += 1

    def _restart(self, died_at: float) -> None:
        while True:
            with self._cond:
                if self._closed:
                    self._restarting = False
                    self._cond.notify_all()
                    return
                n = self._consecutive
            # Back at once after one failure; a model that keeps failing is retried less
            # often (1, 2, 4, ... s) instead of burning a core on reloads.
            pause = 0.0 if n <= 1 else min(self.config.max_backoff_s, 2.0 ** (n - 2))
            if pause:
                time.sleep(pause)
            try:
                proc = self._spawn()
            except OSError as exc:
                with self._cond:
                    self._note_failure(f"spawn_failed:{type(exc).__name__}")
                continue
            ok = proc.ready.wait(self.config.start_timeout_s) and not proc.dead
            if ok and proc.load_error is None:
                with self._cond:
                    if self._closed:
                        proc.close()
                        continue
                    if not proc.dead:
                        self._proc = proc
                        self._restarting = False
                        self.restarts += 1
                        self.last_restart_s = time.perf_counter() - died_at
                        log.warning("LLM worker back after %.2f s", self.last_restart_s)
                        self._cond.notify_all()
                        return
                    # Died between loading and now: a failure like any other (backs off).
                    self._note_failure(f"restart_failed:{proc.death_reason}")
                continue
            reason = proc.death_reason or (
                _rebuild(proc.load_error).__class__.__name__ if proc.load_error else "start_timeout"
            )
            proc.kill(reason)
            with self._cond:
                self._note_failure(f"restart_failed:{reason}")

    def close(self) -> None:
        """Stop the worker (idempotent); runs at interpreter exit."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            proc, self._proc = self._proc, None
            self._cond.notify_all()
        atexit.unregister(self.close)
        if proc is not None:
            proc.close()

    def __enter__(self) -> WorkerLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The live child's process id (None while it restarts)."""
        proc = self._proc
        return None if proc is None else proc.pid

    @property
    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and not proc.dead

    def wait_ready(self, timeout: float) -> bool:
        """Block until a live worker is there (after a restart); False on timeout."""
        end = time.perf_counter() + timeout
        with self._cond:
            while not self.alive:
                left = end - time.perf_counter()
                if self._closed or left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- calls
    def _live(self, deadline: float | None) -> _Process:
        """The live child, waiting for a restart until ``deadline`` (or the start timeout)."""
        if deadline is None:
            deadline = time.perf_counter() + self.config.start_timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise LLMUnavailable("closed")
                proc = self._proc
                if proc is not None and not proc.dead:
                    return proc
                left = deadline - time.perf_counter()
                if not self._restarting or left <= 0:
                    raise LLMUnavailable("restarting", f"last failure: {self.last_failure}")
                self._cond.wait(left)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method(*args, **kwargs)`` on the model in the worker, within ``deadline``."""
        return self._invoke(method, args, kwargs, self.deadline)

    def _invoke(
        self, method: str, args: Sequence[Any], kwargs: dict[str, Any], deadline: float | None
    ) -> Any:
        proc = self._live(deadline)
        p = proc.submit(method, args, kwargs, deadline)
        # Without a deadline the watchdog bounds the wait (call_timeout_s, then a kill).
        wait = None
        if deadline is not None:
            wait = max(0.0, deadline - time.perf_counter() + self.config.reply_slack_s)
        if not p.done.wait(wait):
            raise LLMTimeout("timeout", f"{method}: no answer by the deadline")
        if p.failure is not None:
            raise LLMUnavailable(p.failure, f"{method}: the LLM worker failed")
        reply = p.reply
        assert reply is not None
        self.timings.extend(CallTiming(**t) for t in reply.get("timings", []))
        if not reply["ok"]:
            if reply["error"] == "MemoryError":
                # A failed allocation may leave native state half-built: start afresh.
                proc.kill("oom")
                self._died(proc, "oom")  # now, not when the reader sees the pipe close
                raise LLMUnavailable("oom", reply["message"])
            if reply["error"] == "TimeoutError":
                with self._cond:
                    self._consecutive = 0
                raise LLMTimeout("timeout", reply["message"])
            raise _rebuild(reply)
        with self._cond:
            self._consecutive = 0
        return reply["result"]

    def reset_cache(self) -> None:
        """Forget the worker's KV prefix cache (a restarted worker starts without one)."""
        try:
            self.call("reset_cache")
        except LLMUnavailable:
            pass

    def logits_for_next_token(self, prompts: Sequence[str], **kwargs: Any) -> np.ndarray:
        """float32 [n_prompts, vocab], computed in the worker."""
        out = self.call("logits_for_next_token", list(prompts), **kwargs)
        return np.asarray(out, dtype=np.float32)

    def generate(
        self, prompt: str, max_tokens: int = 48, grammar: str | None = None, **kwargs: Any
    ) -> str:
        if grammar is not None:  # forwarded only when given: not every target takes it
            kwargs["grammar"] = grammar
        return str(self.call("generate", prompt, max_tokens, **kwargs))

    def chat_prompt(self, user: str, system: str | None = None, **kwargs: Any) -> str:
        return str(self.call("chat_prompt", user, system, **kwargs))

    def token_ids(self, texts: Sequence[str], **kwargs: Any) -> list[list[int]]:
        return [[int(t) for t in row] for row in self.call("token_ids", list(texts), **kwargs)]

    def count_tokens(self, text: str, **kwargs: Any) -> int:
        return int(self.call("count_tokens", text, **kwargs))

    def info(self) -> dict[str, Any]:
        """The model's info from the worker (live when it is up, else as last loaded) plus
        the worker's state: pid, peak RSS (MB), restarts, failures by reason."""
        proc = self._proc
        base: dict[str, Any] = dict(proc.info) if proc is not None else {}
        try:
            if proc is not None and not proc.dead:
                # No deadline, and not through ``self.deadline``: another thread may hold it.
                base = dict(self._invoke("info", (), {}, None))
        except LLMUnavailable:
            pass
        return {
            **base,
            "worker": True,
            "worker_alive": self.alive,
            "worker_restarts": self.restarts,
            "worker_failures": dict(self.failures),
        }


def _rebuild(reply: dict[str, Any]) -> Exception:
    """The child's exception as the same built-in type where there is one (a missing model
    package stays a FileNotFoundError), else a RuntimeError naming the type."""
    name, message = reply.get("error", "RuntimeError"), reply.get("message", "")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not MemoryError:
        try:
            return cls(message)
        except Exception:  # an exception type whose constructor wants other arguments
            pass
    if name == "MemoryError":
        return LLMUnavailable("oom", message)
    return RuntimeError(f"{name}: {message}")


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
