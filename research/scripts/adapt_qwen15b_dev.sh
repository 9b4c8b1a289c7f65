#!/usr/bin/env bash
# Issue 36 item 1 (research notebook, 2026-12-07 session 2): DREAM-distill with the Qwen2.5-Coder-1.5B judge on the
# all-MiniLM-L6-v2 start, in the dev protocol — teacher judge_and_start, tau_J from research/scripts/teacher_proxy.py
# (0.5), the kept 1.5B signal of the static track's examples (research/artifacts/judge-signal/qwen1.5b.tar.gz, unpacked
# into runs/judge-signal-qwen1.5b; its examples are runs/learn-static-3k/<dataset>/train.jsonl), 250 steps x 8,
# SciFact then NFCorpus dev, seeds 0-2 each beside its shuffled-target control, every row also fused with BM25
# (convex, BM25's weight 0.5 / 0.6 as chosen on dev for BM25 + all-MiniLM-L6-v2). Resumable: re-run to continue.
# In the session it ran from a snapshot of the tree (runs/pipeline42c.sh, PYTHONPATH=runs/snap42c/src).
set -euo pipefail
TAU_J=${TAU_J:-0.5}
run() {
  python research/scripts/learn.py --config research/configs/learn-dev.yaml --variant adapt-3k-qwen1.5b-250 \
    --set out=runs/learn-adapt-3k-qwen1.5b-250 \
    --set datasets.0.build.max_examples=3000 --set datasets.1.build.max_examples=3000 \
    --set datasets.0.train_data=runs/learn-static-3k/scifact/train.jsonl \
    --set datasets.1.train_data=runs/learn-static-3k/nfcorpus/train.jsonl \
    --set base.llm.name=qwen2.5-coder-1.5b-instruct \
    --set base.heads.file=runs/signal/heads-qwen2.5-coder-1.5b-instruct.json \
    --set base.dream_distill.signal_cache_dir=runs/judge-signal-qwen1.5b \
    --set base.dream_distill.teacher=judge_and_start --set base.dream_distill.judge_temperature=$TAU_J \
    --set base.train.max_steps=250 \
    --set fuse_with=bm25 --set datasets.0.fusion=0.5 --set datasets.1.fusion=0.6 --set "baselines=[untrained,bm25]" \
    "$@"
}
for d in scifact nfcorpus; do
  run --dataset "$d" --seeds 0 1 2
done
