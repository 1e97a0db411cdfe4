"""``python -m training eval``: Pass@1 of a model (a folder or a Hub id) on the paper's benchmarks or any data,
laid out like the paper's tables (``training.evaluate``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    UsageError,
    add_field_arguments,
    check_writable,
)
from training.grader_config import add_grader_arguments, grader_config_from


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


COMMAND = Command(
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
)
