#!/usr/bin/env bash
# The spread of retrievers behind bench/check_validity.py (issue 35): models better and worse than their starts on
# the real dev qrels, trained cheaply from the kept 1.5B judge signal. Resumable (compare reuses finished runs and
# resumes checkpoints); run from the repository root, one job at a time:
#   tar xzf research/artifacts/judge-signal/qwen1.5b.tar.gz            # → runs/judge-signal-qwen1.5b
#   mkdir -p runs/signal && cp research/artifacts/heads/heads-qwen2.5-coder-1.5b-instruct.json runs/signal/
#   bash research/scripts/check_models.sh
#   python bench/check_validity.py --dataset scifact --write-questions --sample 150   # then nfcorpus
#   python bench/check_validity.py --sample 150 --ship
# Run 2026-12-07 (the static part and the questions; the MiniLM-start part was stopped to free the cores, see
# research/notebook.md).
set -euo pipefail
L="python research/scripts/learn.py"
Q15="--set base.llm.name=qwen2.5-coder-1.5b-instruct --set base.heads.file=runs/signal/heads-qwen2.5-coder-1.5b-instruct.json --set base.dream_distill.signal_cache_dir=runs/judge-signal-qwen1.5b"
K3="--set datasets.0.build.max_examples=3000 --set datasets.1.build.max_examples=3000"
for d in scifact nfcorpus; do
  # static start: DREAM-distill (+ its shuffled-target control) and InfoNCE, seeds 0 and 1, 750 steps
  $L --config research/configs/learn-static.yaml --out runs/validity/learn.json --dataset $d --seeds 0 1 \
    --variant static-$d $Q15 $K3 --set out=runs/validity/static --set base.train.max_steps=750 \
    --set "objectives=[dream_distill, infonce]" --set "controls=[dream_distill]" --set "baselines=[untrained]"
  # static start at a harmful learning rate (1e-2)
  $L --config research/configs/learn-static.yaml --out runs/validity/learn.json --dataset $d --seeds 0 \
    --variant static-lr1e-2-$d $Q15 $K3 --set out=runs/validity/static-lr1e-2 --set base.train.max_steps=750 \
    --set base.train.lr=1.0e-2 --set "objectives=[dream_distill, infonce]" --set "controls=[]" --set "baselines=[untrained]"
done
for d in scifact nfcorpus; do
  # all-MiniLM-L6-v2 start: InfoNCE on spans (250 steps) and DREAM-distill judge·start (100 steps)
  $L --config research/configs/learn-dev.yaml --out runs/validity/learn.json --dataset $d --seeds 0 \
    --variant adapt-infonce-$d $Q15 $K3 --set out=runs/validity/adapt --set base.train.max_steps=250 \
    --set "objectives=[infonce]" --set "controls=[]" --set "baselines=[untrained]"
  $L --config research/configs/learn-dev.yaml --out runs/validity/learn.json --dataset $d --seeds 0 \
    --variant adapt-distill-$d $Q15 $K3 --set out=runs/validity/adapt-distill-100 --set base.train.max_steps=100 \
    --set base.dream_distill.teacher=judge_and_start --set base.train.warmup_steps=10 \
    --set "objectives=[dream_distill]" --set "controls=[]" --set "baselines=[untrained]"
done
