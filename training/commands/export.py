"""``python -m training export``: a run's checkpoint as a ``save_pretrained`` folder (``training.export``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, UsageError, check_writable


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory (holds run.json and checkpoints/)"
    )
    parser.add_argument("--step", type=int, default=None,
                        help="the checkpoint's step (default: the newest; the error lists the steps there)")  # fmt: skip
    parser.add_argument("--out", required=True, help="the folder to write (must not exist, or be empty)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="weights' precision (default: the run's: bfloat16 when it computes in bfloat16)")  # fmt: skip


def run_export(args: argparse.Namespace) -> int:
    from training.checkpoint import CheckpointError
    from training.export import ExportError, export_checkpoint

    try:
        check_writable(Path(args.out))
        out = export_checkpoint(args.run_dir, args.step, args.out, args.dtype)
    except (ExportError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {out}: evaluate it with python -m training eval --model {out}", file=sys.stderr)
    return EXIT_OK


COMMAND = Command(
    name="export",
    help="write a run's checkpoint as a save_pretrained folder (model + tokenizer) for eval and transformers",
    add_arguments=add_export_arguments,
    run=run_export,
    description="Rebuild the run's policy from its run.json (the embedded decoder, or its --model's "
    "architecture and tokenizer), load the weights of checkpoint --step, and write model and tokenizer with "
    "save_pretrained into --out, with export.json naming the run and step. The folder loads with "
    "transformers.AutoModelForCausalLM.from_pretrained and as eval --model. A finished run also has "
    "<run>/final_model, the same for its last step. A run keeps its newest --keep-checkpoints checkpoints "
    "(default 2), one every --save-every steps.",
    epilog="examples:\n"
    "  python -m training train --method real --preset tiny --out runs/real-tiny   # keeps steps 90, 100\n"
    "  python -m training export runs/real-tiny --step 90 --out exports/real-tiny-step90\n"
    "  python -m training export runs/real-tiny --out exports/real-tiny   # the newest checkpoint\n"
    "  python -m training eval --model exports/real-tiny-step90 --benchmarks aime --limit 10 --k 2",
)
