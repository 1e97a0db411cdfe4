"""``--report-to``: a real 2-step training run sends TensorBoard and W&B (offline) exactly the run directory's step
metrics (same names, same steps, same values; nulls left out) and the run's config; a missing package or an
unknown tracker is one line; a tracker that fails is dropped with one warning and the others go on."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.training.conftest import SMALL, cli_flags, run_cli
from training.cli import main
from training.config import ConfigError, build_config
from training.trackers import INSTALL_HINT, TensorBoardTracker, Trackers, parse_report_to, scalars
from workbench.runlog import open_run, read_meta, step_file

STEPS = 2
HAVE_TB = __import__("importlib.util").util.find_spec("tensorboard") is not None
HAVE_WANDB = __import__("importlib.util").util.find_spec("wandb") is not None


def metrics_rows(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Each step's metrics row as the run directory holds it."""
    steps = open_run(run_dir).steps()
    return {s: pq.read_table(step_file(run_dir, "metrics", s)).to_pylist()[0] for s in steps}


@pytest.fixture(scope="module")
def tracked_run(ws_cache, tmp_path_factory) -> Path:
    """A 2-step run of the small config through the CLI, validated at step 2 (step 1's val_pass1 is null)."""
    names = [n for n, ok in (("tensorboard", HAVE_TB), ("wandb", HAVE_WANDB)) if ok]
    if not names:
        pytest.skip(f"neither tensorboard nor wandb is installed ({INSTALL_HINT})")
    out = tmp_path_factory.mktemp("tracked") / "run"
    settings = {**SMALL, "steps": STEPS, "val_every": 2, "save_every": 2, "cache_dir": str(ws_cache)}
    args = [
        "train",
        "--method",
        "real",
        "--out",
        str(out),
        *cli_flags(settings),
        "--report-to",
        ",".join(names),
    ]
    done = run_cli([*args, "--wandb-offline"], env={"WANDB_SILENT": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in done.stderr, done.stderr[-3000:]
    return out


def test_report_to_values_are_checked():
    assert parse_report_to("none") == () and parse_report_to("") == () and parse_report_to(None) == ()
    assert parse_report_to("wandb, tensorboard,wandb") == ("wandb", "tensorboard")
    for bad in ("tensorbord", "none,wandb", "mlflow"):
        with pytest.raises(ValueError, match="choose a comma list of tensorboard, wandb, or none"):
            parse_report_to(bad)
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'"):
        build_config("tiny", {"method": "real", "report_to": "tensorbord"}).validate()


@pytest.mark.parametrize("package", ["tensorboard", "wandb"])
def test_a_missing_package_is_one_line_naming_the_extra(package, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, package, None)  # what importlib sees when the package is not installed
    rc = main(["train", "--method", "real", "--out", str(tmp_path / "run"), "--report-to", package])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (
        f"error: --report-to {package} needs the {package} package, which is not installed: "
        "pip install -e .[trackers]\n"
    )
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.skipif(not HAVE_TB, reason=f"tensorboard is not installed ({INSTALL_HINT})")
def test_tensorboard_holds_every_metric_of_the_run_directory(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    rows = metrics_rows(tracked_run)
    assert sorted(rows) == list(range(1, STEPS + 1))
    expected = {(k, s): v for s, row in rows.items() for k, v in row.items() if k != "step" and v is not None}
    got = {(k, e.step): e.value for k in acc.Tags()["scalars"] for e in acc.Scalars(k)}
    assert set(got) == set(expected)  # the same names at the same steps; nothing more, nothing less
    assert rows[1]["val_pass1"] is None and ("val_pass1", 1) not in got and ("val_pass1", 2) in got
    for key, value in expected.items():
        assert got[key] == np.float32(value), key  # TensorBoard stores float32
    assert len({k for k, _ in got}) >= 30  # the whole table, not a handful of headline numbers
    # the config once, as run.json holds it
    texts = acc.Tensors("config/text_summary")
    assert len(texts) == 1
    text = texts[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n")) == read_meta(tracked_run)["config"]


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B ``.wandb`` file (a LevelDB-style log of 32 KiB blocks after a 7-byte header, each
    record a protobuf ``Record``), read without W&B's own reader, which recent releases no longer ship in
    Python."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, part, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if length == 0 and kind == 0:
            pos += left - 7
            continue
        part += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
    return out


@pytest.mark.skipif(not HAVE_WANDB, reason=f"wandb is not installed ({INSTALL_HINT})")
def test_wandb_offline_holds_every_metric_and_the_config(tracked_run):
    files = sorted((tracked_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    records = wandb_records(files[0])
    history: dict[int, dict[str, Any]] = {}
    config: dict[str, Any] = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(r.history.step.num, {}).update(
                {k: v for k, v in items.items() if not k.startswith("_")}
            )
        elif kind == "run":
            config.update(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.run.config.update}
            )
        elif kind == "config":
            config.update(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.config.update}
            )
    rows = metrics_rows(tracked_run)
    expected = {s: {k: v for k, v in row.items() if k != "step" and v is not None} for s, row in rows.items()}
    assert sorted(history) == sorted(expected)
    for step, row in expected.items():
        assert history[step] == row, step  # exact: W&B keeps float64
    config = {k: v.get("value", v) if isinstance(v, dict) and set(v) <= {"value", "desc"} else v
              for k, v in config.items() if not k.startswith("_")}  # fmt: skip
    assert config == read_meta(tracked_run)["config"]
    assert (tracked_run / "wandb" / "run_id").read_text().strip() == files[0].stem.removeprefix("run-")


def test_resume_may_change_report_to(tracked_run, tmp_path):
    from training.cli import build_parser
    from training.commands.train import config_from_args

    run = tmp_path / "run"
    shutil.copytree(tracked_run, run)
    args = build_parser().parse_args(["train", "--out", str(run), "--resume", "--report-to", "none"])
    cfg, changed = config_from_args(args)
    assert cfg.report_to == "none" and changed == {"report_to": "none"}
    assert read_meta(tracked_run)["config"]["report_to"] != "none"


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        self.closed = False

    def log_config(self, config: dict[str, Any]) -> None:
        pass

    def log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        raise OSError("disk full")

    def close(self) -> None:
        self.closed = True


@pytest.mark.skipif(not HAVE_TB, reason=f"tensorboard is not installed ({INSTALL_HINT})")
def test_a_failing_tracker_is_dropped_with_one_warning_and_the_others_go_on(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    warnings: list[tuple[str, str]] = []
    broken = _Broken()
    trackers = Trackers([broken, TensorBoardTracker(tmp_path / "tb")], lambda n, e: warnings.append((n, e)))
    for step in (1, 2, 3):
        trackers.log_metrics(step, {"step": step, "loss": step / 2, "val_pass1": None, "name": "x"})
    trackers.close()
    assert warnings == [("broken", "log_metrics(step 1): OSError: disk full")] and broken.closed
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["loss"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 0.5), (2, 1.0), (3, 1.5)]


def test_scalars_are_the_finite_numbers_of_a_row():
    row = {"step": 3, "a": 1, "b": 0.25, "c": None, "d": float("nan"), "e": "text", "f": True}
    assert scalars(row) == {"a": 1.0, "b": 0.25, "f": 1.0}
