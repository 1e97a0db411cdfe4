"""``python -m training check-data``, ``eval`` and ``export``: their arguments and what they run. Data is named
as in ``training.data_sources`` (benchmark names, files, Hugging Face Hub ids and folders), with
``--problem-field`` / ``--answer-field`` for other column names; ``--model`` is a folder or a Hub id
(``training.model.resolve_model``); ``export`` writes a run's checkpoint as a model folder (``training.export``).

``training.cli`` serves them by registering ``DATA_COMMANDS`` in its ``COMMANDS``; ``main`` runs them alone
(``python -m training.data_commands COMMAND ...``, the same parser and code).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, UsageError, check_writable
from training.grader_config import add_grader_arguments, grader_config_from


def add_field_arguments(parser: argparse.ArgumentParser) -> None:
    """``--problem-field`` and ``--answer-field``: other column names for the problem and the gold answer."""
    parser.add_argument("--problem-field", default=None, metavar="COLUMN",
                        help="column holding the problem (a string or a chat list; dotted for nested columns, "
                        "e.g. 'question'; default: 'problem', else a verl-style 'prompt'); for every set named "
                        "except the six benchmarks")  # fmt: skip
    parser.add_argument("--answer-field", default=None, metavar="COLUMN",
                        help="column holding the gold answer (dotted for nested columns; a worked solution gives "
                        "the content of its last \\boxed{}, e.g. 'solution'; default: 'answer', else "
                        "'reward_model.ground_truth')")  # fmt: skip


# ------------------------------------------------------------------------------------------------ check-data


def add_check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="data files (.json, .jsonl, .parquet), benchmark names (aime, aime25, amc, math, minerva, "
        "olympiad_bench; 'benchmarks' for all six; shipped with the package, $REAL_DATA_DIR overrides them), "
        "or Hugging Face data sets: a Hub id or folder, owner/name[:split=S][:name=C][:revision=R]",
    )
    parser.add_argument("--workers", type=int, default=2, help="grader worker processes (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per graded answer before its worker is killed"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="check only the first N problems of each file"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-check's pairing (default: 0)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results to this file")
    parser.add_argument(
        "--audit", action=argparse.BooleanOptionalAction, default=True,
        help="grade each gold against trivial and adversarial answers (0, 1, -1, its numbers, an empty box, "
        "itself without words) and report the golds that accept one (default: yes; cached by content)",
    )  # fmt: skip
    parser.add_argument(
        "--cache-dir", default="cache", help="where audit results are cached (default: cache)"
    )
    add_field_arguments(parser)
    add_grader_arguments(parser)


def _data_paths(specs: list[str]) -> list[str]:
    from training.datasets import BENCHMARKS, benchmark_path

    out = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if item == "benchmarks":
                out += [str(benchmark_path(b)) for b in BENCHMARKS]
            elif item:
                out.append(str(benchmark_path(item)) if item in BENCHMARKS else item)
    return out


def run_check_data(args: argparse.Namespace) -> int:
    from training.datacheck import format_results, run_check

    if args.workers < 1 or not args.timeout > 0 or (args.limit is not None and args.limit < 2):
        print("error: --workers must be >= 1, --timeout > 0 and --limit >= 2", file=sys.stderr)
        return EXIT_USAGE
    paths = _data_paths(args.paths)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        config = grader_config_from(args, timeout=args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    results, unreadable = run_check(
        paths, workers=args.workers, timeout=args.timeout, seed=args.seed, limit=args.limit,
        json_out=args.json_out, log=log, problem_field=args.problem_field, answer_field=args.answer_field,
        config=config, audit=args.audit, cache_dir=args.cache_dir,
    )  # fmt: skip
    if results:
        print(format_results(results))
    for e in unreadable:
        print(f"unreadable: {e}")
    failed = [r.path for r in results if not r.self_ok]
    if failed:
        print(f"self-check failed in: {', '.join(failed)}")
    return EXIT_FAILED if failed or unreadable else EXIT_OK


# ------------------------------------------------------------------------------------------------ eval


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from training.datasets import BENCHMARKS, PROMPT_SUFFIX

    parser.add_argument("--model", required=True, help="a causal-LM folder with its tokenizer (save_pretrained "
                        "layout; 'python -m training export' writes one from a run's checkpoint), or a Hugging "
                        "Face Hub id (owner/name[:revision=R]) resolved through the Hugging Face cache")  # fmt: skip
    parser.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help="comma-separated benchmark names, .json/.jsonl/.parquet files, or Hugging Face data sets (a Hub id "
        "or folder, owner/name[:split=S][:name=C][:revision=R]) (default: all six shipped benchmarks: "
        + ",".join(BENCHMARKS)
        + ")",
    )
    parser.add_argument("--k", type=int, default=16, help="samples per question; Pass@1 is their mean accuracy "
                        "(default: 16, the paper's)")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: 0.6)")
    parser.add_argument("--max-new-tokens", type=int, default=8192, help="longest response (default: 8192)")
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N questions of each benchmark"
    )
    parser.add_argument("--out", default=None, help="output folder (default: evals/<model folder name>); "
                        "run the same command again to continue an interrupted evaluation")  # fmt: skip
    parser.add_argument("--label", default=None, help="name of this model's row (default: the folder name)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--batch-prompts", type=int, default=8,
                        help="questions per generation call, k samples each; results are saved after each call "
                        "(default: 8)")  # fmt: skip
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                        help="rollout back end (default: transformers; vllm is an optional GPU extra)")  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="weights and compute (default: bfloat16 on CUDA, float32 on CPU)")  # fmt: skip
    parser.add_argument("--prompt-template", default="{prompt}", help="text given to the model; {prompt} is "
                        "the problem with the suffix (default: '{prompt}')")  # fmt: skip
    parser.add_argument("--prompt-suffix", default=PROMPT_SUFFIX,
                        help="appended to each problem unless it ends with it (default: the paper's)")  # fmt: skip
    parser.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True,
                        help="wrap prompts in the tokenizer's chat template when it has one (default: on)")  # fmt: skip
    parser.add_argument("--bad-rows", choices=("raise", "skip"), default="raise",
                        help="a benchmark row without a usable problem or answer (default: raise)")  # fmt: skip
    parser.add_argument("--paper-tables", default="1,2,3",
                        help="the paper's tables shown as reference rows: any of 1,2,3, or 'none' (default: 1,2,3)")  # fmt: skip
    parser.add_argument(
        "--grader-workers", type=int, default=2, help="math-verify worker processes (default: 2)"
    )
    parser.add_argument(
        "--grader-timeout", type=float, default=5.0, help="seconds per graded sample (default: 5)"
    )
    parser.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.85,
                        help="vllm: share of GPU memory for the engine (default: 0.85)")  # fmt: skip
    parser.add_argument("--save-responses", action="store_true", help="also store every response text")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar"
    )
    add_field_arguments(parser)
    add_grader_arguments(parser)


def run_eval_command(args: argparse.Namespace) -> int:
    from training.evaluate import (
        PAPER_TABLES,
        EvalError,
        EvalSettings,
        data_fingerprints,
        markdown,
        prepare_out,
        run_eval,
        write_csv,
    )

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        from training.model import model_name, resolve_model

        try:
            model_dir = resolve_model(args.model)  # a folder, or a Hub id through the Hugging Face cache
        except ValueError as e:
            raise EvalError(str(e)) from None
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            raise EvalError("--device cuda: no CUDA device is available here")
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                              "cpu" if args.device == "auto" else args.device)  # fmt: skip
        dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
        if args.backend == "vllm":
            from training.rollout import check_backend

            check_backend("vllm")
            if device.type != "cuda":
                raise EvalError("--backend vllm needs a CUDA GPU")
        benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
        tables = (
            [] if args.paper_tables.strip() == "none" else [t.strip() for t in args.paper_tables.split(",")]
        )
        unknown = [t for t in tables if t not in PAPER_TABLES]
        if unknown:
            raise EvalError(f"--paper-tables: no table {', '.join(unknown)} (choose from 1, 2, 3 or none)")
        if args.grader_workers < 1 or not args.grader_timeout > 0:
            raise EvalError("--grader-workers must be >= 1 and --grader-timeout > 0")
        try:
            fingerprints = data_fingerprints(benchmarks)
        except ValueError as e:
            raise EvalError(str(e)) from None
        settings = EvalSettings(
            model=str(model_dir.resolve()), benchmarks=benchmarks, k=args.k, temperature=args.temperature,
            max_new_tokens=args.max_new_tokens, seed=args.seed, limit=args.limit, batch_prompts=args.batch_prompts,
            prompt_template=args.prompt_template, prompt_suffix=args.prompt_suffix, chat_template=args.chat_template,
            backend=args.backend, dtype=dtype, data=fingerprints, problem_field=args.problem_field,
            answer_field=args.answer_field,
        )  # fmt: skip
        settings.check()
        out = Path(args.out) if args.out else Path("evals") / model_name(args.model)
        check_writable(out)
        prepare_out(out, settings)
    except (EvalError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # BackendUnavailable and friends: one line, nothing started
        from training.rollout import BackendUnavailable

        if isinstance(e, BackendUnavailable):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise

    import torch

    from training.datasets import DataFormatError
    from training.model import load_local_model, max_positions
    from training.rewards import Grader
    from training.rollout import TransformersBackend, VLLMBackend

    label = args.label or model_name(args.model)
    try:
        if args.backend == "vllm":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            backend = VLLMBackend(
                str(model_dir), eos_id=tokenizer.eos_token_id, dtype=dtype, seed=args.seed,
                gpu_memory_utilization=args.vllm_gpu_memory_utilization, sleep=False,
            )  # fmt: skip
        else:
            weights = torch.bfloat16 if dtype == "bfloat16" else torch.float32
            model, tokenizer = load_local_model(model_dir, weights, device)
            model.eval()
            limit = max_positions(model)
            if limit is not None and args.max_new_tokens >= limit:
                raise EvalError(
                    f"--max-new-tokens {args.max_new_tokens} does not fit the model's {limit} positions"
                )
            backend = TransformersBackend(model, tokenizer.pad_token_id, tokenizer.eos_token_id)
        config = grader_config_from(args, timeout=args.grader_timeout)
        with Grader(workers=args.grader_workers, timeout=args.grader_timeout, config=config) as grader:
            t0 = time.perf_counter()
            results = run_eval(
                settings, out, backend=backend, tokenizer=tokenizer, grader=grader, progress=args.progress,
                save_responses=args.save_responses, bad_rows=args.bad_rows, log=log,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
        backend.close()
    except KeyboardInterrupt:
        print(
            f"stopped; finished questions are saved in {out}: run the same command to continue",
            file=sys.stderr,
        )
        return 130
    except (EvalError, DataFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    text = markdown(results, label, settings, tables)
    (out / "results.md").write_text(text)
    write_csv(out / "results.csv", results, label, settings, tables)
    print(text)
    print(f"wrote {out / 'results.md'} and {out / 'results.csv'} ({seconds:.1f} s)", file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ export


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


DATA_COMMANDS: dict[str, Command] = {
    "check-data": Command(
        name="check-data",
        help="grade every gold answer against itself and against another problem's answer, per file",
        add_arguments=add_check_data_arguments,
        run=run_check_data,
        description="Load each data file or data set (bad rows are skipped and listed) and grade, with the trainer's "
        "math-verify grader, every accepted gold answer written as \\boxed{answer} against itself "
        "(self-check: must pass for every problem, else training and evaluation would score that problem 0) "
        "and each problem's answer against another problem's gold answers (cross-check: accepted pairs are "
        "counted; distinct problems can share an answer). Exit code 1 when a self-check fails or a file "
        "cannot be read.",
        epilog="examples:\n  python -m training check-data benchmarks\n"
        "  python -m training check-data agentica-org/DeepScaleR-Preview-Dataset:split=train --limit 500\n"
        "  python -m training check-data data/mine.jsonl --problem-field question --answer-field solution",
    ),
    "eval": Command(
        name="eval",
        help="Pass@1 of a model on the paper's benchmarks, as a table laid out like the paper's Tables 1-3",
        add_arguments=add_eval_arguments,
        run=run_eval_command,
        description="Sample k responses per question of each benchmark (temperature 0.6, up to 8,192 new tokens, "
        "as in the paper), grade them with math-verify, and report Pass@1 (the mean accuracy over the k samples, "
        "averaged over questions) per benchmark and their average. Prints Markdown and writes <out>/results.md "
        "and <out>/results.csv, with the paper's reported rows as separate, labelled reference rows. Results are "
        "saved after every --batch-prompts questions: the same command continues an interrupted evaluation.",
        epilog="examples:\n"
        "  python -m training eval --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --backend vllm\n"
        "  python -m training export runs/real-tiny --step 90 --out exports/real-tiny-step90\n"
        "  python -m training eval --model exports/real-tiny-step90 --benchmarks aime,amc --k 16\n"
        "  python -m training eval --model runs/real-tiny/final_model --limit 10 --k 2 --max-new-tokens 64   "
        "# a quick look",
    ),
    "export": Command(
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
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """A parser of the data commands alone (the same arguments as under ``python -m training``)."""
    parser = argparse.ArgumentParser(
        prog="python -m training", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in DATA_COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help, epilog=cmd.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        cmd.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one data command; returns its exit code."""
    args = build_parser().parse_args(argv)
    return DATA_COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
