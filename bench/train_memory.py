"""Peak memory of `dreamir train` on its defaults (issue 4 item 5: must stay under 6 GB).

    python bench/train_memory.py [--corpus ../shared/assets/beir/scifact] [--steps 4]

Builds training data from the corpus with `dreamir build-data` defaults (8 candidates, 96-word
chunks), then runs `dreamir train` with every other setting at its default (SmolLM2-135M frozen,
all-MiniLM-L6-v2, batch 4, 16 heads selected at start, the reuse step) for a few steps in a child
process, and reports the child's peak resident memory. Writes bench/results/train_memory.json.
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
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_memory.json"))
    args = parser.parse_args()
    cli = [sys.executable, "-m", "dreamir.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        subprocess.run(
            [*cli, "build-data", "--corpus", args.corpus, "--out", str(data), "--max-examples", "200"], check=True
        )
        start = time.perf_counter()
        subprocess.run(
            [*cli, "train", "--data", str(data), "--run-dir", str(Path(tmp) / "run"), "--max-steps", str(args.steps)],
            check=True,
        )
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("| setting | value |\n|---|---:|")
    print(
        f"| steps (batch 4, 8 candidates, defaults) | {args.steps} |\n| wall seconds incl. load and head selection "
        f"| {seconds:.0f} |\n| peak RSS of the training process | {peak_mb:.0f} MB |"
    )
    print(f"under the 6 GB target: {peak_mb < 6 * 1024}")
    write_result(
        args.out, {"args": vars(args), "peak_rss_mb": peak_mb, "seconds": seconds, "under_6gb": peak_mb < 6144}
    )


if __name__ == "__main__":
    main()
