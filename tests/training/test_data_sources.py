"""Data sets through Hugging Face ``datasets`` (Hub ids and folders), column mapping, and the Hub path offline.

Local folders go through ``datasets.load_dataset`` exactly as a Hub id does; a Hub id is read offline from the
``datasets`` cache (laid out here as a download leaves it), and without the cache it fails with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.training.conftest import ROOT
from training.cli import main as data_main
from training.data_sources import (
    DataSource,
    load_source,
    parse_source,
    read_split,
    resolve_sources,
    source_fingerprint,
)
from training.datasets import BUNDLED_DATA_DIR, PROMPT_SUFFIX, DataFormatError, last_boxed, load_problems

ROWS = [
    {"question": "What is 1+1?", "solution": "Add them: $1+1=\\boxed{2}$."},
    {"question": "What is half of 1?", "solution": "It is \\boxed{\\frac{1}{2}}, i.e. 0.5."},
    {"question": "Name the answer.", "solution": None},  # a bad row: counted, never silently dropped
    {"question": "What is 2*3?", "solution": "6"},  # no \boxed: the text is the answer
]


def _folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"set_{kind}"
    folder.mkdir()
    if kind == "jsonl":
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), folder / "train.parquet")
    return folder


def test_specs_name_benchmarks_files_folders_and_hub_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("REAL_DATA_DIR", raising=False)
    assert parse_source("aime") == DataSource(
        "aime", "aime", path=BUNDLED_DATA_DIR / "benchmarks" / "aime.json"
    )
    assert parse_source("d/x.parquet") == DataSource("d/x.parquet", "x", path=Path("d/x.parquet"))
    hub = parse_source("agentica-org/DeepScaleR-Preview-Dataset:split=train:revision=abc123")
    assert (hub.dataset, hub.name, hub.split, hub.revision, hub.config, hub.is_file) == (
        "agentica-org/DeepScaleR-Preview-Dataset", "DeepScaleR-Preview-Dataset", "train", "abc123", None, False
    )  # fmt: skip
    assert parse_source("hf:gsm8k:name=main").config == "main" and parse_source("hf:gsm8k").dataset == "gsm8k"
    assert parse_source("EleutherAI/hendrycks_math:config=algebra").config == "algebra"
    folder = _folder(tmp_path, "jsonl")
    assert parse_source(str(folder)).dataset == str(folder) and parse_source(str(folder)).name == "set_jsonl"
    assert [s.name for s in resolve_sources(f"aime, {folder}, o/n:split=test")] == ["aime", "set_jsonl", "n"]
    for bad, message in [
        ("aime24", "unknown benchmark 'aime24'"),
        ("o/n:splt=train", "unknown option 'splt'"),
        ("o/n:split=", "empty value for split="),
        ("x.jsonl:split=train", "not files"),
        ("nothing-here:split=train", "neither a local folder nor a Hub id"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_source(bad)


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_folder_loads_through_datasets_with_mapped_fields_like_a_file(tmp_path, kind):
    folder = _folder(tmp_path, kind)
    fields = {"problem_field": "question", "answer_field": "solution"}
    report = load_source(parse_source(str(folder)), on_error="skip", **fields)
    assert [(p.id, p.answer) for p in report.problems] == [(0, "2"), (1, "\\frac{1}{2}"), (3, "6")]
    assert report.problems[0].prompt == f"What is 1+1?\n\n{PROMPT_SUFFIX}"
    assert [p.source for p in report.problems] == ["set_" + kind] * 3
    assert [str(e) for e in report.skipped] == [f"{folder}, row 2, field 'solution': empty answer (null)"]
    (data_file,) = folder.iterdir()  # the same rows read from the file by the project's own readers
    direct = load_problems(data_file, on_error="skip", **fields)
    assert [(p.id, p.prompt, p.answers) for p in direct.problems] == [
        (p.id, p.prompt, p.answers) for p in report.problems
    ]
    with pytest.raises(DataFormatError, match=f"^{folder}, row 2, field 'solution': empty answer"):
        load_source(parse_source(str(folder)), on_error="raise", **fields)
    with pytest.raises(DataFormatError, match="row 0, field 'problem': missing"):  # today's default columns
        load_source(parse_source(str(folder)))
    with pytest.raises(DataFormatError, match="row 0, field 'query': missing \\(named by --problem-field\\)"):
        load_source(parse_source(str(folder)), problem_field="query", answer_field="solution")


def test_a_verl_style_prompt_and_nested_columns_map(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}],
             "meta": {"gold": "$4$"}, "solution": "so \\boxed{4}"}]  # fmt: skip
    path = tmp_path / "v.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    (p,) = load_problems(path, problem_field="prompt", answer_field="meta.gold").problems
    assert p.prompt.startswith("2+2?") and p.answer == "4"
    (q,) = load_problems(path, problem_field="prompt", answer_field="solution").problems
    assert q.answer == "4"
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{a}{b}} end") == "\\frac{a}{b}"
    assert last_boxed("no box") is None
    with pytest.raises(ValueError, match="never closed"):
        last_boxed("\\boxed{1")


def test_fingerprints_follow_the_data(tmp_path):
    folder = _folder(tmp_path, "jsonl")
    first = source_fingerprint(parse_source(str(folder)))
    assert first == source_fingerprint(parse_source(str(folder)))
    (folder / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n")  # the same folder, other rows
    assert source_fingerprint(parse_source(str(folder))) != first
    assert len(source_fingerprint(parse_source("aime"))) == 16


def test_check_data_and_eval_take_folders_and_field_flags(tmp_path, chat_model, capsys):
    folder = _folder(tmp_path, "parquet")
    out = tmp_path / "check.json"
    code = data_main(["check-data", str(folder), "--problem-field", "question", "--answer-field", "solution",
                      "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    (res,) = json.loads(out.read_text())["results"]
    assert (res["path"], res["problems"], res["self_pass"], res["skipped"]) == (str(folder), 3, 3, 1)
    assert f"skipped: {folder}, row 2, field 'solution': empty answer (null)" in captured.out

    ev = tmp_path / "ev"
    code = data_main(["eval", "--model", str(chat_model), "--benchmarks", str(folder), "--problem-field",
                      "question", "--answer-field", "solution", "--bad-rows", "skip", "--k", "1",
                      "--max-new-tokens", "3", "--out", str(ev), "--no-progress", "--paper-tables", "none"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = [json.loads(x) for x in (ev / "samples" / "set_parquet.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [0, 1, 3]
    saved = json.loads((ev / "eval.json").read_text())
    assert saved["problem_field"] == "question" and saved["answer_field"] == "solution"
    assert saved["data"]["set_parquet"] == source_fingerprint(parse_source(str(folder)))


def _offline_run(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, *code.split("\0")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_hub_id_offline_fails_with_one_line(tmp_path):
    spec = "agentica-org/DeepScaleR-Preview-Dataset:split=train"
    r = _offline_run("\0".join(["-m", "training", "check-data", spec]), tmp_path / "hf")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("unreadable:")]
    assert line == (
        f"unreadable: {spec}: not in the local datasets cache and the Hugging Face Hub cannot be reached "
        "(HF_HUB_OFFLINE is set); load it once with network (it is cached then), or pass a local "
        ".json/.jsonl/.parquet file or folder"
    )
    r = _offline_run("\0".join(["-m", "training", "eval", "--model", str(tmp_path), "--benchmarks",
                                spec]), tmp_path / "hf")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_a_hub_id_reads_offline_from_the_datasets_cache(tmp_path):
    """A data set cached by an earlier download is read by its Hub id with HF_HUB_OFFLINE=1. The cache entry is
    made as ``datasets`` makes one: the prepared Arrow files of the data set under ``<owner>___<name>``."""
    folder = _folder(tmp_path, "jsonl")
    hf_home = tmp_path / "hf"
    script = f"""
import glob, os, shutil, datasets
ds = datasets.load_dataset("json", data_files={str(folder / "train.jsonl")!r}, split="train")
src = os.path.dirname(ds.cache_files[0]["filename"])
dst = os.path.join(datasets.config.HF_DATASETS_CACHE, "me___tiny-math", "default", "0.0.0", os.path.basename(src))
shutil.copytree(src, dst)
for f in glob.glob(os.path.join(dst, "json-*")):
    os.rename(f, f.replace(os.sep + "json-", os.sep + "tiny-math-"))
from training.data_sources import load_source, parse_source
report = load_source(parse_source("me/tiny-math:split=train"), on_error="skip", problem_field="question",
                     answer_field="solution")
print("RESULT", [p.answer for p in report.problems], len(report.skipped), report.problems[0].source)
"""
    r = _offline_run("\0".join(["-c", script]), hf_home)
    assert r.returncode == 0, r.stderr
    assert "RESULT ['2', '\\\\frac{1}{2}', '6'] 1 tiny-math" in r.stdout, r.stdout


def test_read_split_reads_every_named_set_for_the_trainer(tmp_path, monkeypatch):
    monkeypatch.delenv("REAL_DATA_DIR", raising=False)
    folder = _folder(tmp_path, "parquet")
    logged: list[str] = []
    problems, info = read_split(f"aime25,{folder}", on_error="skip", problem_field="question",
                                answer_field="solution", log=logged.append)  # fmt: skip
    assert [p.source for p in problems] == ["aime25"] * 30 + ["set_parquet"] * 3
    assert info["problems"] == 33 and info["skipped"] == 1 and len(logged) == 2
    bench, data = info["files"]
    assert (
        bench["path"] == str(BUNDLED_DATA_DIR / "benchmarks" / "aime25.json")
        and len(bench["sha256_16"]) == 16
    )
    assert data == {"name": "set_parquet", "dataset": str(folder), "problems": 3, "skipped": 1,
                    "fingerprint": source_fingerprint(parse_source(str(folder)))}  # fmt: skip
    assert info["skipped_rows"] == [f"{folder}, row 2, field 'solution': empty answer (null)"]
