"""Binary rewards from math-verify, in worker processes with a hard per-completion timeout.

``grade(responses, answers, timeout=...)`` returns one float per response: 1.0 when math-verify finds the
response's final answer equal to the gold answer, else 0.0. A gold answer is a string, or a tuple of strings when
a problem accepts several answers (Minerva lists alternatives): then the response is correct when it matches any
of them (math-verify's ``verify`` over the parsed alternatives together, one worker call, so a single-answer
problem costs exactly what it did).

Why worker processes: math-verify's own timeouts use SIGALRM, which works only in a main thread, and some inputs
(power towers such as ``9^{9^{9^9}}``) hang inside C code where no signal handler runs. Each completion is
therefore graded in a worker process (its main thread, math-verify's timeouts off) while the parent enforces a
hard deadline from outside: a worker that misses it is killed and replaced, a worker that dies is replaced, and
that completion gets reward 0 and counts as a ``timeout`` or an ``error``. A soft timer inside the worker
(``setitimer``, 80% of the deadline) ends most slow cases without the cost of a respawn. Worker memory is capped
with ``RLIMIT_AS`` so a blow-up is a counted error, not a frozen machine.

Parsing follows a ``training.grader_config.GraderConfig`` (one per grader, or per call): by default, the
paper's grader, the gold answer is normalised (``training.gold``: trailing punctuation, prose after the formula,
LaTeX thousands separators), wrapped in ``$...$`` and parsed with LaTeX and plain-expression extraction; the
response is parsed with LaTeX extraction only, so an answer counts only when the model writes it in LaTeX
(``\\boxed{}`` first). The config switches the response's extraction (``boxed`` / ``latex`` / ``latex+expr``),
``verify``'s float rounding, set-relation comparison and strictness, the timeout and the gold normalisation.
Identical (response, answer, settings) triples are graded once and remembered, under a 16-byte digest (not the
strings: the cache's memory is bounded by its size, however long the responses). ``Grader.audit`` grades one gold
against several probe responses in one task (``training.gold_audit``).
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from training.grader_config import GraderConfig

OK, TIMEOUT, ERROR = "ok", "timeout", "error"


@dataclass
class GradeReport:
    """Rewards of one ``Grader.grade`` call with what happened on the way."""

    rewards: list[float]
    status: list[str]  # ok | timeout | error, per response
    seconds: float = 0.0
    cache_hits: int = 0
    details: list[str] = field(default_factory=list)  # error text for non-ok responses ('' otherwise)
    # seconds from handing the completion to a worker to its result (kill included); 0.0 for a cache hit
    elapsed: list[float] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)  # per response: its verdict came from the cache

    @property
    def timeouts(self) -> int:
        return self.status.count(TIMEOUT)

    @property
    def errors(self) -> int:
        return self.status.count(ERROR)


# ------------------------------------------------------------------------------------------------ worker side


class _SoftTimeout(BaseException):
    """Raised by the worker's own timer; a BaseException so math-verify's ``except Exception`` cannot eat it."""


def last_boxed(text: str) -> str | None:
    """The last ``\\boxed{...}`` (or ``\\fbox{...}``) of ``text`` with its braces balanced, else None: what the
    ``boxed`` extraction reads."""
    best = None
    for cmd in ("\\boxed{", "\\fbox{"):
        start = text.rfind(cmd)
        if start >= 0 and (best is None or start > best):
            best = start
    if best is None:
        return None
    depth = 0
    for j in range(text.index("{", best), len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[best : j + 1]
    return None


def _worker_main(conn: Connection, memory_limit_mb: int) -> None:
    """Worker loop: receive ``(task_id, kind, payload, soft_timeout, verdict_key)``, send ``(task_id, value,
    status, detail)``. ``kind`` ``grade``: payload ``(response, answer)``, value the reward. ``audit``: payload
    ``(answer, probes)``, value ``(rewards of the probes, what the gold parsed to)``."""
    import logging
    import resource
    import signal
    import warnings
    from functools import lru_cache

    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.disable(logging.WARNING)  # math-verify warns once that its timeouts are off: they are, on purpose
    warnings.simplefilter(
        "ignore"
    )  # sympy's deprecation warnings on odd model output: noise in the run's log
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    from training.gold import normalize_gold

    gold_config = [LatexExtractionConfig(), ExprExtractionConfig()]
    pred_configs = {
        "boxed": [LatexExtractionConfig()],  # applied to the last \boxed{} alone
        "latex": [LatexExtractionConfig()],
        "latex+expr": [LatexExtractionConfig(), ExprExtractionConfig()],
    }

    @lru_cache(maxsize=4096)
    def parse_gold(answer: str, normalize: bool):
        text = normalize_gold(answer) if normalize else answer.strip()
        if not (text.startswith("$") and text.endswith("$")):
            text = f"${text}$"
        return parse(text, gold_config, parsing_timeout=None)

    def parse_golds(answer, normalize: bool) -> list:
        if isinstance(answer, str):
            return parse_gold(answer, normalize)
        # several accepted answers: verify() is true when any gold matches any prediction
        return [g for alt in answer for g in parse_gold(alt, normalize)]

    def judge(gold: list, response: str, key: tuple) -> float:
        extraction, rounding, set_relation, strict, _ = key
        if extraction == "boxed":
            response = last_boxed(response) or ""
        pred = parse(response, pred_configs[extraction], parsing_timeout=None) if response else []
        ok = bool(gold) and bool(pred) and verify(
            gold, pred, float_rounding=rounding, strict=strict, allow_set_relation_comp=set_relation,
            timeout_seconds=None,
        )  # fmt: skip
        return 1.0 if ok else 0.0

    def on_alarm(signum, frame):
        raise _SoftTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        task_id, kind, payload, soft, key = msg
        if soft > 0:
            signal.setitimer(signal.ITIMER_REAL, soft)
        try:
            if kind == "grade":
                response, answer = payload
                value = judge(parse_golds(answer, key[-1]), response, key)
            else:  # audit: one gold against several probes, parsed once
                answer, probes = payload
                gold = parse_golds(answer, key[-1])
                value = (tuple(judge(gold, p, key) for p in probes), "; ".join(map(str, gold))[:300])
            result = (task_id, value, OK, "")
        except _SoftTimeout:
            result = (task_id, None, TIMEOUT, "soft timeout in worker")
        except MemoryError:
            result = (task_id, None, ERROR, "MemoryError")
        except Exception as e:  # a verifier bug must cost one reward, not the run
            result = (task_id, None, ERROR, f"{type(e).__name__}: {e}"[:300])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send(result)


# ------------------------------------------------------------------------------------------------ parent side


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class _Worker:
    """A fresh interpreter running ``_worker_main`` (a plain subprocess: unlike multiprocessing's spawn, it does
    not re-import the parent's ``__main__``, so it starts with math-verify only, not torch), talking over a
    socket pair. The parent holds no copy of the child's end, so a dead worker reads as end-of-file."""

    def __init__(self, memory_limit_mb: int):
        self.conn, child = mp.Pipe(duplex=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        code = "import sys; from training.rewards import _worker_entry; _worker_entry(sys.argv[1:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(child.fileno()), str(memory_limit_mb)],
            pass_fds=[child.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0
        self.started = 0.0  # when the current task was handed over

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()


def _worker_entry(argv: list[str]) -> None:
    """Entry point of a worker interpreter: ``argv = [socket fd, memory limit in MiB]``."""
    from multiprocessing.connection import Connection

    _worker_main(Connection(int(argv[0])), int(argv[1]))


def gold_answer(answer: Any, i: int = 0) -> str | tuple[str, ...]:
    """A gold answer as ``Grader.grade`` keys it: a string, a one-element list or tuple as its string, a longer
    one as a tuple of strings; anything else is a ``ValueError`` naming answer ``i``."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, list | tuple) and answer and all(isinstance(a, str) for a in answer):
        return answer[0] if len(answer) == 1 else tuple(answer)
    raise ValueError(f"answer {i} must be a string or a non-empty tuple of strings: {answer!r}")


class Grader:
    """A pool of math-verify worker processes with a hard per-completion deadline (see the module docstring).

    Use as a context manager or call ``close()``. ``grade`` may be called many times; workers are reused.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float | None = None,
        *,
        config: GraderConfig | None = None,
        memory_limit_mb: int = 4096,
        cache_size: int = 200_000,
        start_timeout: float = 120.0,
        soft_fraction: float | None = 0.8,
    ):
        if workers < 1:
            raise ValueError(f"the grader needs at least one worker, got {workers}")
        config = GraderConfig() if config is None else config
        if not isinstance(config, GraderConfig):
            raise ValueError(f"config must be a GraderConfig, got {type(config).__name__}")
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"the grading timeout must be > 0 seconds, got {timeout}")
            config = replace(config, timeout=float(timeout))
        self.config = config  # the settings used when a call names none (its timeout: the grader's)
        self.n_workers = workers
        self.timeout = config.timeout
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout = start_timeout
        self.soft_fraction = soft_fraction  # the worker's own timer, as a share of the deadline (None: off)
        self._workers: list[_Worker] = [_Worker(memory_limit_mb) for _ in range(workers)]
        self._cache: OrderedDict[bytes, float] = OrderedDict()  # digest of (response, answer) -> reward
        self._cache_size = cache_size
        self.replaced = 0  # workers killed or dead and replaced, over the grader's life
        self._startup_failures = 0
        # The workers, their pipes and the cache are shared state: one grade (or close) at a time. A second
        # thread waits for the first instead of reading its replies (which gave it wrong rewards).
        self._lock = threading.RLock()

    # -- lifecycle
    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        for w in self._workers:
            try:
                if w.alive() and w.task is None:
                    w.conn.send(None)  # ask it to exit
                    w.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            w.kill()
        self._workers = []

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _replace(self, i: int) -> None:
        self._workers[i].kill()
        self._workers[i] = _Worker(self.memory_limit_mb)
        self.replaced += 1

    # -- grading
    def grade(
        self,
        responses: list[str],
        answers: list[str | tuple[str, ...]],
        timeout: float | None = None,
        *,
        config: GraderConfig | None = None,
    ) -> GradeReport:
        """Grade ``responses[i]`` against ``answers[i]`` (a string, or a tuple of accepted answers: correct when
        any matches) with ``config`` (default: the grader's); each completion gets at most ``timeout`` seconds
        of a worker (default: the grader's timeout, or ``config.timeout`` when a config is given) before it is
        killed and scored 0. Safe to call from several threads: calls are served one at a time."""
        with self._lock:
            return self._grade(responses, answers, timeout, config)

    def _settings(self, timeout: float | None, config: GraderConfig | None) -> tuple[float, GraderConfig]:
        if not self._workers:
            raise RuntimeError("the grader is closed")
        if config is not None and not isinstance(config, GraderConfig):
            raise ValueError(f"config must be a GraderConfig, got {type(config).__name__}")
        if timeout is None:
            timeout = self.timeout if config is None else config.timeout
        timeout = float(timeout)
        if not timeout > 0:
            raise ValueError(f"the grading timeout must be > 0 seconds, got {timeout}")
        return timeout, self.config if config is None else config

    def _grade(
        self,
        responses: list[str],
        answers: list[str | tuple[str, ...]],
        timeout: float | None,
        config: GraderConfig | None,
    ) -> GradeReport:
        if len(responses) != len(answers):
            raise ValueError(f"{len(responses)} responses but {len(answers)} answers")
        timeout, config = self._settings(timeout, config)
        key_cfg = config.verdict_key()
        t0 = time.perf_counter()
        n = len(responses)
        rewards = [0.0] * n
        status = [OK] * n
        details = [""] * n
        elapsed = [0.0] * n
        cached = [False] * n
        # Distinct (response, answer) pairs not yet known, by digest.
        pending: dict[bytes, list[int]] = {}
        pairs: dict[bytes, tuple[str, str | tuple[str, ...]]] = {}
        hits = 0
        for i, (response, answer) in enumerate(zip(responses, answers, strict=True)):
            answer = gold_answer(answer, i)
            if not isinstance(response, str):
                raise ValueError(f"response {i} must be a string")
            key = _digest(response, answer, key_cfg)
            if key in self._cache:
                self._cache.move_to_end(key)
                rewards[i] = self._cache[key]
                cached[i] = True
                hits += 1
            else:
                pending.setdefault(key, []).append(i)
                pairs.setdefault(key, (response, answer))
        keys = list(pending)
        results = self._run([("grade", pairs[k]) for k in keys], key_cfg, timeout)
        for key, (value, st, detail, took) in zip(keys, results, strict=True):
            reward = 0.0 if value is None else float(value)
            for i in pending[key]:
                rewards[i], status[i], details[i], elapsed[i] = reward, st, detail, took
            if st == OK:
                self._cache[key] = reward
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return GradeReport(rewards, status, time.perf_counter() - t0, hits, details, elapsed, cached)

    def audit(
        self,
        answers: list[str | tuple[str, ...]],
        probes: list[list[str]],
        timeout: float | None = None,
        *,
        config: GraderConfig | None = None,
    ) -> list[tuple[tuple[float, ...] | None, str, str, str]]:
        """Grade each of ``probes[i]`` (responses) against ``answers[i]`` in one worker task that parses the gold
        once: per answer ``(rewards of its probes or None, status, detail, what the gold parsed to)``. The task's
        deadline is ``timeout`` (as in ``grade``) times its number of probes; a timeout or crash loses the task's
        verdicts (None) with its status. Not cached. Used by ``training.gold_audit``."""
        if len(answers) != len(probes):
            raise ValueError(f"{len(answers)} answers but {len(probes)} probe lists")
        with self._lock:
            timeout, config = self._settings(timeout, config)
            tasks = []
            for i, (answer, ps) in enumerate(zip(answers, probes, strict=True)):
                if isinstance(answer, list):
                    answer = tuple(answer)
                if not (isinstance(answer, str) or (answer and all(isinstance(a, str) for a in answer))):
                    raise ValueError(
                        f"answer {i} must be a string or a non-empty tuple of strings: {answer!r}"
                    )
                tasks.append(("audit", (answer, tuple(ps))))
            longest = max([len(ps) for ps in probes] + [1])
            results = self._run(tasks, config.verdict_key(), timeout * longest)
        out = []
        for value, st, detail, _ in results:
            verdicts, parsed = value if value is not None else (None, "")
            out.append((verdicts, st, detail, parsed))
        return out

    def _run(
        self, tasks: list[tuple[str, tuple]], key: tuple, timeout: float
    ) -> list[tuple[Any, str, str, float]]:
        """Run ``(kind, payload)`` tasks on the workers with ``timeout`` seconds each: ``(value, status, detail,
        seconds)`` per task, value None when it timed out or failed."""
        results: list[tuple[Any, str, str, float] | None] = [None] * len(tasks)
        queue = list(range(len(tasks)))[::-1]  # pop() from the end: in order
        soft = max(0.05, self.soft_fraction * timeout) if self.soft_fraction else 0.0
        started = time.monotonic()
        while any(r is None for r in results):
            now = time.monotonic()
            # Hand work to idle, ready workers.
            for w in self._workers:
                if w.ready and w.task is None and queue:
                    k = queue.pop()
                    kind, payload = tasks[k]
                    try:
                        w.conn.send((k, kind, payload, soft, key))
                    except (OSError, ValueError):
                        queue.append(k)
                        w.ready = (
                            False  # dead pipe: reading it gives end of file, then the worker is replaced
                        )
                        continue
                    w.task, w.deadline, w.started = k, now + timeout, now
            busy = [w for w in self._workers if w.task is not None]
            if not busy and not queue:
                break
            waits = [w.deadline for w in busy]
            if any(not w.ready for w in self._workers):
                waits.append(now + 0.5)
            wait_for = max(0.0, min(waits) - now) if waits else 0.5
            ready = set(wait([w.conn for w in self._workers], timeout=wait_for))
            now = time.monotonic()
            for i, w in enumerate(list(self._workers)):
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None:  # end of file: the worker is gone
                        try:
                            w.proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
                        if not w.ready:
                            self._startup_failures += 1
                            if self._startup_failures > 3:
                                raise RuntimeError(
                                    "grader workers exit before they start (exit code "
                                    f"{w.proc.returncode}; their error is printed above): is math-verify installed?"
                                )
                        self._fail(i, results, ERROR, f"worker died (exit code {w.proc.returncode})")
                        continue
                    if msg[0] == "ready":
                        w.ready = True
                        self._startup_failures = 0
                        continue
                    k, value, st, detail = msg
                    if k == w.task:
                        results[k] = (value, st, detail, now - w.started)
                        w.task = None
                elif not w.alive():
                    self._fail(i, results, ERROR, f"worker exited with code {w.proc.returncode}")
                elif w.task is not None and now >= w.deadline:
                    self._fail(i, results, TIMEOUT, f"no answer within {timeout:g} s: worker killed")
                elif not w.ready and now - started > self.start_timeout:
                    raise RuntimeError(f"a grader worker did not start within {self.start_timeout:g} s")
        return [r if r is not None else (None, ERROR, "not graded", 0.0) for r in results]

    def _fail(self, i: int, results: list, status: str, detail: str) -> None:
        """Score the worker's task 0 with ``status``, then kill and replace the worker (its elapsed time counts
        the kill: that is when the parent can go on)."""
        w = self._workers[i]
        task, started = w.task, w.started
        self._replace(i)
        if task is not None:
            results[task] = (None, status, detail, time.monotonic() - started)


def _digest(response: str, answer: str | tuple[str, ...], key: tuple = ()) -> bytes:
    """16-byte key of a (response, answer) pair under grader settings ``key`` (``GraderConfig.verdict_key``),
    the answer a string or a tuple of accepted answers (a tuple of one string is not the string); lone
    surrogates (invalid Unicode) are encoded, not refused."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(key).encode())
    texts = (response, answer) if isinstance(answer, str) else (response, "\x00tuple", *answer)
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


_DEFAULT: Grader | None = None
_DEFAULT_LOCK = (
    threading.RLock()
)  # guards _DEFAULT: one thread must not close it while another grades with it


def default_grader(workers: int | None = None) -> Grader:
    """A process-wide grader, started on first use and closed at exit."""
    with _DEFAULT_LOCK:
        return _default_grader(workers)


def _default_grader(workers: int | None) -> Grader:
    global _DEFAULT
    if _DEFAULT is None or (workers is not None and workers != _DEFAULT.n_workers):
        if _DEFAULT is not None:
            _DEFAULT.close()
        _DEFAULT = Grader(workers=workers or min(2, os.cpu_count() or 1))
        atexit.register(_DEFAULT.close)
    return _DEFAULT


def grade(
    responses: list[str],
    answers: list[str | tuple[str, ...]],
    timeout: float | None = None,
    workers: int | None = None,
    config: GraderConfig | None = None,
) -> list[float]:
    """One float per response: 1.0 if math-verify finds its answer equal to the gold answer (any of them, for a
    tuple of accepted answers) under ``config`` (default ``GraderConfig()``, the paper's grader), else 0.0.

    A completion whose verification exceeds ``timeout`` seconds (default: ``config.timeout``, 5 s), or crashes
    its worker, gets 0.0; the worker is killed and replaced. Uses a process-wide pool of worker processes
    (``default_grader``); safe to call from several threads (calls are served one at a time).
    """
    config = GraderConfig() if config is None else config
    with _DEFAULT_LOCK:
        grader = default_grader(workers)
        return grader.grade(list(responses), list(answers), timeout=timeout, config=config).rewards


def reward_function(
    config: GraderConfig | None = None, *, answer_key: str = "answer", workers: int | None = None
) -> Callable[..., list[float]]:
    """A reward function in TRL's form, ``f(prompts, completions, **columns) -> list[float]``, grading each
    completion (a string, or a chat list whose last message is the answer) against the data set's
    ``answer_key`` column with ``config`` (default: the paper's grader) through ``grade``. Its
    ``grader_config`` attribute holds ``config.to_dict()`` (for the run's record)."""
    config = GraderConfig() if config is None else config

    def reward(prompts: Any = None, completions: Any = None, **columns: Any) -> list[float]:
        if completions is None or answer_key not in columns:
            raise ValueError(
                f"the reward function needs completions and the data set's {answer_key!r} column"
            )
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return grade(texts, [a if isinstance(a, str) else tuple(a) for a in columns[answer_key]],
                     workers=workers, config=config)  # fmt: skip

    reward.__name__ = f"math_verify_{config.extraction.replace('+', '_')}"
    reward.grader_config = config.to_dict()  # type: ignore[attr-defined]
    return reward
