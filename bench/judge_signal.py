"""The judge signal of a compare config's training examples, computed ahead of training (e.g. on a GPU).

    python bench/judge_signal.py --config configs/learn-static.yaml --set base.device=cuda \
        --set base.llm.name=qwen2.5-coder-1.5b-instruct \
        --set base.heads.file=runs/signal/heads-qwen2.5-coder-1.5b-instruct.json \
        --set base.dream_distill.signal_cache_dir=runs/judge-signal-qwen1.5b [--dataset scifact] [--tf32]

For every dataset of the config: builds its training examples if they are missing (from the corpus, as
`bench/learn.py` would), then stores DREAM-distill's judge signal g for each example with its real target
and, when the config has the `dream_distill` control, with the shuffled targets, in
`dream_distill.signal_cache_dir`. A later `bench/learn.py` run with the same settings (judge, heads, dtype,
examples) then makes no judge pass: the signal does not depend on the retriever, so none is loaded here
(a tiny stand-in fills the trainer's slot). When `heads.file` is set and absent, the heads are selected
label-free from the first dataset's training texts and written there first, so that every run shares them.
Resumable: what a killed call stored is kept. Prints examples per second per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _results import run_main
from dreamir.apps.compare import CONTROL_SUFFIX, load_compare_config, run_config, training_data
from dreamir.config import parse_override
from dreamir.data.training import load_examples
from dreamir.heads import select_heads_label_free
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.testing import save_tiny_encoder
from dreamir.trainer import Trainer

OBJECTIVE = "dream_distill"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a compare key")
    parser.add_argument("--dataset", action="append", help="only these datasets of the config (default: all)")
    parser.add_argument(
        "--tf32", action="store_true", help="CUDA: TF32 matrix products for the fp32 judge (faster; ~1e-3 relative)"
    )
    args = parser.parse_args()
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    config = load_compare_config(args.config, dict(parse_override(item) for item in args.set))
    datasets = [d for d in config.datasets if not args.dataset or d.name in args.dataset]
    if not datasets:
        raise SystemExit(f"no dataset of {args.config} is named {args.dataset}")
    controls = [False, True] if OBJECTIVE in config.controls else [False]
    first = run_config(config, datasets[0], OBJECTIVE, training_data(config, datasets[0]))
    lm = FrozenLM.load(first.llm.name, device=first.device, dtype=first.dtype)
    heads_file = first.heads.file
    if heads_file and not Path(heads_file).exists():
        start = time.perf_counter()
        examples = load_examples(first.data.train)
        ranking = select_heads_label_free(
            lm, examples, first.heads.detection_examples, first.heads.scoring, first.data.limits, first.dream.layout
        )
        ranking.save(heads_file, int(first.heads.count))
        print(f"heads: selected label-free in {time.perf_counter() - start:.0f} s -> {heads_file}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = Retriever.load(str(save_tiny_encoder(Path(tmp) / "stand-in")), device=first.device)
        for dataset in datasets:
            for control in controls:
                run = run_config(config, dataset, OBJECTIVE, training_data(config, dataset), control=control)
                start = time.perf_counter()
                trainer = Trainer(run, lm=lm, retriever=stand_in)
                message = trainer.precompute()
                seconds = time.perf_counter() - start
                name = OBJECTIVE + (CONTROL_SUFFIX if control else "")
                print(
                    f"{dataset.name} {name}: {message} ({seconds:.0f} s, "
                    f"{len(trainer.examples) / seconds:.1f} examples/s incl. the stored ones)",
                    flush=True,
                )


if __name__ == "__main__":
    run_main(main)
