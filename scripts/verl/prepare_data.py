"""Write the workbench's benchmark JSON files as verl-format parquet (the validation set of the verl launch).

    python scripts/verl/prepare_data.py [--data-dir DIR] [--out data/verl] [--sets aime ...]

Each row: ``data_source`` (the set's name), ``prompt`` (one user message: the problem and the instruction to box
the answer, as in DAPO-Math-17k), ``ability``, ``reward_model = {ground_truth, style}``, ``extra_info = {index}``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path

import pandas as pd

INSTRUCTION = "\n\nLet's think step by step and output the final answer within \\boxed{}."


def default_data_dir() -> Path:
    """``$REAL_DATA_DIR`` if set, else the benchmarks shipped in the package (``training/bundled_data``)."""
    env = os.environ.get("REAL_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "training" / "bundled_data"


def convert(path: Path, name: str) -> pd.DataFrame:
    rows = json.loads(path.read_text())
    records = []
    for i, row in enumerate(rows):
        answer = row["answer"]
        if isinstance(answer, str) and answer.strip().startswith("["):
            answer = ast.literal_eval(answer.strip())
        if isinstance(answer, list | tuple):
            answer = answer[0] if answer else ""
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        records.append(
            {
                "data_source": name,
                "prompt": [{"role": "user", "content": str(row["problem"]) + INSTRUCTION}],
                "ability": "MATH",
                "reward_model": {"ground_truth": str(answer).strip(), "style": "rule"},
                "extra_info": {"index": i},
            }
        )
    return pd.DataFrame.from_records(records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="holds benchmarks/*.json")
    parser.add_argument(
        "--out", type=Path, default=Path("data/verl"), help="output folder (default data/verl)"
    )
    parser.add_argument("--sets", nargs="+", default=["aime"], help="benchmark names (default: aime)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        src = args.data_dir / "benchmarks" / f"{name}.json"
        if not src.is_file():
            parser.error(f"{src} not found (set --data-dir or REAL_DATA_DIR)")
        frame = convert(src, name)
        frame.to_parquet(args.out / f"{name}.parquet")
        print(f"{args.out / f'{name}.parquet'}: {len(frame)} rows")


if __name__ == "__main__":
    main()
