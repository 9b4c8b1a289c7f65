"""Peak memory of `dreamir train` on its defaults (issue 4: under 6 GB with SmolLM2; issue 17: the
1.5B judge within 16 GB).

    python bench/train_memory.py [--llm qwen2.5-coder-1.5b-instruct] [--corpus ../shared/assets/beir/scifact]
                                 [--steps 4] [--gradient-checkpointing]

Builds training data from the corpus with `dreamir build-data` defaults (8 candidates, 96-word
chunks), then runs `dreamir train` with every other setting at its default (SmolLM2-135M frozen,
all-MiniLM-L6-v2, batch 4, 16 heads selected at start, the reuse step) for a few steps in a child
process, and reports the child's peak resident memory (`--gradient-checkpointing`: with
train.gradient_checkpointing on). Writes bench/results/train_memory[-LLM][-checkpointing].json.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/assets/beir/scifact"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--limit-gb", type=float, default=None, help="target (default 6, or 16 for another --llm)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="train.gradient_checkpointing=true")
    parser.add_argument("--out", default=None, help="default bench/results/train_memory[-LLM][-checkpointing].json")
    args = parser.parse_args()
    default = args.llm == "smollm2-135m-instruct"
    limit_gb = args.limit_gb or (6.0 if default else 16.0)
    suffix = ("" if default else f"-{args.llm}") + ("-checkpointing" if args.gradient_checkpointing else "")
    name = f"train_memory{suffix}.json"
    out = args.out or str(ROOT / "bench/results" / name)
    cli = [sys.executable, "-m", "dreamir.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        subprocess.run(
            [*cli, "build-data", "--corpus", args.corpus, "--out", str(data), "--max-examples", "200"], check=True
        )
        start = time.perf_counter()
        subprocess.run(
            [
                *cli,
                "train",
                "--data",
                str(data),
                "--run-dir",
                str(Path(tmp) / "run"),
                "--max-steps",
                str(args.steps),
                "--llm",
                args.llm,
                *(["--set", "train.gradient_checkpointing=true"] if args.gradient_checkpointing else []),
            ],
            check=True,
        )
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("| setting | value |\n|---|---:|")
    print(
        f"| steps (batch 4, 8 candidates, defaults) | {args.steps} |\n| wall seconds incl. load and head selection "
        f"| {seconds:.0f} |\n| peak RSS of the training process | {peak_mb:.0f} MB |"
    )
    under = peak_mb < limit_gb * 1024
    print(f"frozen LLM {args.llm}; under the {limit_gb:g} GB target: {under}")
    write_result(
        out,
        {
            "args": vars(args),
            "llm": args.llm,
            "peak_rss_mb": peak_mb,
            "seconds": seconds,
            "steps": args.steps,
            "seconds_per_step_incl_load": seconds / args.steps,
            "limit_gb": limit_gb,
            "under_limit": under,
        },
    )


if __name__ == "__main__":
    main()
