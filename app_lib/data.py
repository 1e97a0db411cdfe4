"""Reading runs for the app: a card per folder of the runs root, and cached table reads keyed on file mtimes.

Every read goes through ``workbench.runlog`` (the run-directory contract) and every run path through
``workbench.runs_root.resolve_run_dir`` (no name leaves the root). A run being trained is read up to its last
complete step; when a step lands, the folder's mtime changes and the cached tables are read again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_lib.metrics_cache import checked_metrics
from workbench.liveness import run_is_live
from workbench.methods import LABELS, METHODS, resolve_hparams
from workbench.runlog import TABLES, RunFormatError, open_run, step_file
from workbench.runs_root import UnsafeRunName, list_run_names, resolve_run_dir
from workbench.step_slices import file_rows, read_slice


@dataclass
class RunCard:
    """What the app knows about one folder of the runs root; ``error`` is set when it cannot be read."""

    name: str
    path: Path | None
    error: str | None = None
    problem: str | None = (
        None  # a bad file that does not stop the run from being read (e.g. one step's metrics)
    )
    method: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    data_skipped: dict[str, int] = field(default_factory=dict)  # split -> bad data rows the trainer skipped
    data_skipped_rows: list[str] = field(default_factory=list)  # their errors (file, row, field), as logged

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)

    @property
    def synthetic(self) -> bool:
        return bool(self.config.get("synthetic"))

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def last_step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def total_steps(self) -> int | None:
        for src in (self.status, self.config):
            v = src.get("steps") or src.get("total_steps")
            if isinstance(v, int) and v > 0:
                return v
        return None

    @property
    def live(self) -> bool:
        """Still training (``workbench.liveness.run_is_live``: running, and its writer lock held)."""
        return self.path is not None and run_is_live(self.path, self.status)

    @property
    def display_state(self) -> str:
        if self.state == "running" and not self.live:
            return "interrupted"
        return self.state


def _inside(path: Path, parent: Path) -> bool:
    real = path.resolve()
    return real == parent or real.is_relative_to(parent)


def read_card(root: Path, name: str) -> RunCard:
    """The card of folder ``name``: run.json, status.json and the complete steps, or the error that stops it.

    Every complete step's metrics file is also read through the reader's checks (cached until a step lands): a
    truncated, retyped or non-finite one is the card's ``problem`` (shown on it, naming file, row and field),
    while the run's other steps stay readable. Rollouts and tokens files are checked where they are read (the
    Inspector, the statistics)."""
    try:
        path = resolve_run_dir(root, name)
    except UnsafeRunName as e:
        return RunCard(name, None, error=str(e))
    return _read_card(name, str(path), card_signature(path))


def card_signature(path: Path) -> tuple[int, ...]:
    """Changes when what a card shows may change: the run folder's entries (a file or link added, removed or
    replaced: every run file is written by an atomic rename), ``run.json``, ``status.json`` and the complete
    steps (the metrics folder). Four ``stat`` calls, no file read."""
    return tuple(_mtime(p) for p in (path, path / "run.json", path / "status.json", path / "metrics"))


@st.cache_data(max_entries=4096, show_spinner=False)
def _read_card(name: str, run_dir: str, sig: tuple[int, ...]) -> RunCard:
    """``read_card`` past the name check, cached until ``card_signature`` changes (the app reads every card of
    the root on each rerun: the sidebar's count and the run pages)."""
    path = Path(run_dir)
    card = RunCard(name, path)
    try:
        for table in TABLES:
            if (path / table).exists() and not _inside(path / table, path):
                raise RunFormatError(path / table, "is a link that leaves the run folder; refused")
        run = open_run(path)
        card.method = run.method
        card.config = run.config
        card.status = run.status()
        card.steps = run.steps()
        card.data_skipped, card.data_skipped_rows = data_skips(run.env)
    except RunFormatError as e:
        card.error = str(e)
    except OSError as e:
        card.error = f"{path}: cannot be read ({e.strerror or e})"
    if card.ok and card.steps:
        try:
            metrics(card)
        except RunFormatError as e:
            card.problem = str(e)
    return card


def data_skips(env: Any) -> tuple[dict[str, int], list[str]]:
    """The bad data rows a run skipped (``--bad-rows skip``), from ``run.json``'s ``env.data``, which
    ``training.loop.load_splits`` writes as ``{split: {"skipped": n, "skipped_rows": [error, ...]}}``: the count
    per split and the logged errors (each naming file, row and field). A hand-edited or foreign ``env`` that does
    not have this shape counts as no skip."""
    counts: dict[str, int] = {}
    rows: list[str] = []
    data = env.get("data") if isinstance(env, dict) else None
    if not isinstance(data, dict):
        return counts, rows
    for split, info in data.items():
        if not isinstance(info, dict):
            continue
        n = info.get("skipped")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            counts[str(split)] = n
            listed = info.get("skipped_rows")
            if isinstance(listed, list):
                rows += [f"{split}: {r}" for r in listed if isinstance(r, str)]
    return counts, rows


def scan(root: Path) -> list[RunCard]:
    """A card for every folder directly under ``root`` (hidden ones left out), sorted by name."""
    return [read_card(root, n) for n in list_run_names(root)]


def root_signature(root: Path, steps: bool = False) -> tuple:
    """What the runs list shows of ``root``, cheaply (no table is read): each run folder's name and whether it
    trains (``status.json``'s state and ``workbench.liveness.run_is_live``); with ``steps``, also when
    its complete steps last changed (the metrics folder's mtime). Two equal signatures mean nothing to redraw."""
    import json

    out = []
    for name in list_run_names(root):
        path = Path(root) / name
        try:
            status = json.loads((path / "status.json").read_bytes())
            state = str(status.get("state")) if isinstance(status, dict) else "?"
            live = isinstance(status, dict) and run_is_live(path, status)
        except (OSError, ValueError):
            state, live = "?", False
        out.append((name, state, live, _mtime(path / "metrics") if steps else 0))
    return tuple(out)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def run_signature(card: RunCard) -> int:
    """Changes whenever a step lands in (or is removed from) the run: the metrics folder's mtime."""
    assert card.path is not None
    return _mtime(card.path / "metrics")


def _check_files(run_dir: Path, table: str, steps: list[int]) -> None:
    for s in steps:
        f = step_file(run_dir, table, s)
        if f.is_symlink() and not _inside(f, run_dir):
            raise RunFormatError(f, "is a link that leaves the run folder; refused")


@st.cache_data(max_entries=64, show_spinner=False)
def _metrics(run_dir: str, sig: int) -> pd.DataFrame:
    run = open_run(run_dir)
    _check_files(run.dir, "metrics", run.steps())
    return checked_metrics(run).to_pandas().sort_values("step").reset_index(drop=True)


def metrics(card: RunCard) -> pd.DataFrame:
    """All complete steps' metrics of a run (cached until a step lands; between app processes on disk,
    ``app_lib.metrics_cache``)."""
    assert card.path is not None
    return _metrics(str(card.path), _mtime(card.path / "metrics"))


@dataclass(frozen=True)
class VariantInfo:
    """The variant a run belongs to (``workbench.stats.variant_of``: method + hyper-parameters that differ from
    the method's defaults) and its seed, as the figures group runs."""

    key: str
    label: str
    method: str
    default: bool  # the method at its default hyper-parameters
    seed: int | None


@st.cache_data(max_entries=1024, show_spinner=False)
def _variant(run_dir: str, sig: int) -> VariantInfo:
    from workbench.stats import seed_of, variant_of

    run = open_run(run_dir)
    try:
        seed: int | None = seed_of(run)
    except RunFormatError:
        seed = None
    try:
        v = variant_of(run)
    except (RunFormatError, ValueError, TypeError):  # no or foreign hparams: the run is a variant of its own
        label = LABELS.get(run.method, run.method)
        return VariantInfo(f"{run.method}[{run.name}]", f"{label} ({run.name})", run.method, False, seed)
    return VariantInfo(v.key, v.label, v.method, not v.overrides, seed)


def variant(card: RunCard) -> VariantInfo:
    """The card's run's variant and seed (cached until ``run.json`` changes); a run whose hyper-parameters are
    missing or not its method's is a variant of its own, named after the run."""
    assert card.path is not None
    return _variant(str(card.path), _mtime(card.path / "run.json"))


@st.cache_data(max_entries=64, show_spinner=False)
def _initial_metrics(run_dir: str, sig: int) -> dict[str, float]:
    import math

    from workbench.stats.dynamics import initial_validation

    first = initial_validation(run_dir)
    return {
        k: float(v)
        for k, v in first.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def initial_metrics(card: RunCard) -> dict[str, float]:
    """The metrics logged before the first step (the step-0 validation event, e.g. ``val_pass1``), or ``{}``;
    cached until ``events.jsonl`` changes."""
    assert card.path is not None
    return _initial_metrics(str(card.path), _mtime(card.path / "events.jsonl"))


@st.cache_data(max_entries=32, show_spinner=False)
def _rollouts(run_dir: str, sig: int, columns: tuple[str, ...]) -> pd.DataFrame:
    run = open_run(run_dir)
    _check_files(run.dir, "rollouts", run.steps())
    return run.rollouts(columns=list(columns))


def rollouts_all_steps(card: RunCard, columns: tuple[str, ...]) -> pd.DataFrame:
    """``columns`` of the rollouts table over every complete step (cached until a step lands)."""
    assert card.path is not None
    return _rollouts(str(card.path), _mtime(card.path / "metrics"), columns)


# ----------------------------------------------------------------------------------------------- one step
# The inspector's reads (issue 13, item 7): only the columns it shows, only the rows of one group or one rollout,
# every text value size-limited (``workbench.step_slices``). What a limit changed is returned as notes to show.

INSPECTOR_ROLLOUT_COLUMNS = ("rollout", "group", "minibatch", "prompt", "answer", "reward", "length", "s_bar",
                             "weight", "log_c", "advantage", "used")  # fmt: skip
INSPECTOR_TOKEN_COLUMNS = ("rollout", "pos", "token", "old_logp", "logp", "s", "ratio", "entropy", "weight")
MAX_GROUP_TOKENS = 200_000  # a group with more tokens is not read whole (nor replayed): one rollout at a time
MAX_TOKEN_CHARS = 1_000  # a token's text is cut beyond this (a token is a few characters)
MAX_STEP_ROLLOUTS = 50_000  # rollouts of one step read (the paper's steps hold 1,024)


@dataclass(frozen=True)
class StepRollouts:
    """The rollouts of one step (``INSPECTOR_ROLLOUT_COLUMNS``), what the text limits changed, and the number of
    token rows of the step's tokens file (from its footer; the tokens themselves are not read)."""

    rollouts: pd.DataFrame
    notes: tuple[str, ...]
    n_tokens: int


@dataclass(frozen=True)
class TokenRows:
    """Token rows of some rollouts of one step; ``complete`` is False when the row limit stopped the read."""

    tokens: pd.DataFrame
    notes: tuple[str, ...]
    complete: bool


def _complete_step(run_dir: str, step: int) -> Path:
    run = open_run(run_dir)
    if step not in run.steps():
        raise RunFormatError(run_dir, f"step {step} is not complete")
    for table in ("rollouts", "tokens"):
        _check_files(run.dir, table, [step])
    return run.dir


@st.cache_data(max_entries=16, show_spinner=False)
def _step_rollouts(run_dir: str, step: int, sig: int) -> StepRollouts:
    d = _complete_step(run_dir, step)
    part = read_slice(
        step_file(d, "rollouts", step), "rollouts", INSPECTOR_ROLLOUT_COLUMNS, max_rows=MAX_STEP_ROLLOUTS
    )
    n_tokens = file_rows(step_file(d, "tokens", step))
    return StepRollouts(part.table.to_pandas(), tuple(part.notes), n_tokens)


def step_rollouts(card: RunCard, step: int) -> StepRollouts:
    """The rollouts of one complete step, bounded (cached until its files change)."""
    assert card.path is not None
    return _step_rollouts(str(card.path), step, _step_sig(card.path, step))


@st.cache_data(max_entries=8, show_spinner=False)
def _token_rows(run_dir: str, step: int, sig: int, rollouts: tuple[int, ...], max_rows: int) -> TokenRows:
    d = _complete_step(run_dir, step)
    part = read_slice(
        step_file(d, "tokens", step), "tokens", INSPECTOR_TOKEN_COLUMNS, where=("rollout", rollouts),
        max_rows=max_rows, max_text_chars=MAX_TOKEN_CHARS,
    )  # fmt: skip
    return TokenRows(part.table.to_pandas(), tuple(part.notes), part.complete)


def token_rows(card: RunCard, step: int, rollouts: list[int], max_rows: int = MAX_GROUP_TOKENS) -> TokenRows:
    """The token rows of ``rollouts`` in one complete step, at most ``max_rows`` of them (cached)."""
    assert card.path is not None
    ids = tuple(sorted(int(r) for r in rollouts))
    return _token_rows(str(card.path), step, _step_sig(card.path, step), ids, max_rows)


def _step_sig(run_dir: Path, step: int) -> int:
    return sum(_mtime(step_file(run_dir, t, step)) for t in ("rollouts", "tokens", "metrics"))


# ----------------------------------------------------------------------------------------------- statistics
# Computed by workbench.stats, cached here until a step lands.


@st.cache_data(max_entries=32, show_spinner="Computing gradient allocation…")
def _allocation(run_dir: str, sig: int) -> pd.DataFrame:
    from workbench.stats import gradient_allocation

    return gradient_allocation(run_dir)


def gradient_allocation(card: RunCard) -> pd.DataFrame:
    """``workbench.stats.gradient_allocation`` of a run (one row per step)."""
    assert card.path is not None
    return _allocation(str(card.path), run_signature(card))


@st.cache_data(max_entries=32, show_spinner="Computing C+ and C-…")
def _c_composition(run_dir: str, sig: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    from workbench.stats import c_by_composition, real_weights

    values = real_weights(run_dir)  # REAL family: logged; clip family: REAL recomputed on the logged s_bar
    source = str(values["source"].iloc[0]) if len(values) else ""
    return c_by_composition(values, per_step=True), c_by_composition(values), source


def c_composition(card: RunCard) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``c_by_composition`` of ``real_weights`` per step and pooled over steps, and where ``log C`` comes from."""
    assert card.path is not None
    return _c_composition(str(card.path), run_signature(card))


def default_runs(cards: list[RunCard], limit: int = 6) -> list[str]:
    """The runs a comparison opens with: per method, in the paper's order (GRPO, DAPO, GSPO, REAL, BCE, no anchor),
    the first run (lowest seed) trained at the method's default hyper-parameters, else its first run; then other runs
    in listing order up to ``limit``. (A runs root made by ``paper-figures`` lists the ablations first
    alphabetically; the plain methods are what a first look should compare.)"""

    def at_defaults(card: RunCard) -> bool:
        logged = card.config.get("hparams")
        if not isinstance(logged, dict):
            return True
        try:
            defaults = dataclasses.asdict(resolve_hparams(card.method, {}))
        except ValueError:
            return True
        return all(logged.get(k, v) == v for k, v in defaults.items())

    def seed(card: RunCard) -> float:
        value = card.config.get("seed")
        return float(value) if isinstance(value, int | float) else float("inf")

    picked: list[str] = []
    for method in METHODS:
        of_method = sorted(
            (c for c in cards if c.method == method), key=lambda c: (not at_defaults(c), seed(c))
        )
        if of_method:
            picked.append(of_method[0].name)
    picked += [c.name for c in cards if c.name not in picked]
    return picked[:limit]


def figure_csv(cli: str, fdata: Any) -> bytes:
    """The CSV download of run figure ``cli`` drawn from ``fdata`` (its ``RunFigureData``): byte for byte the CSV
    that ``python -m workbench.figures CLI`` writes (``RunFigure.csv_text``: the drawn values, or Table 4); a figure
    without one gets all its data frames, a ``frame`` column naming each."""
    from workbench.figures.registry import RUN_FIGURES

    text = RUN_FIGURES[cli].csv_text(fdata)
    if text is None:
        frames = fdata.frames
        text = pd.concat([f.assign(frame=k) for k, f in frames.items()], ignore_index=True).to_csv(
            index=False
        )
    return text.encode()


def measure_label_noise(card: RunCard, sample: int, steps: list[int]) -> dict[str, Any]:
    """``training.label_noise`` on ``sample`` logged rollouts of ``steps`` of the card's run, with a grader of
    its own (started and closed here): the counts, the Wilson interval and up to 10 examples."""
    from training.label_noise import label_noise
    from training.rewards import Grader

    if card.path is None:
        raise ValueError(f"{card.name}: no run folder")
    with Grader(workers=1) as grader:
        return label_noise(card.path, grader, sample=sample, steps=steps).to_dict()
