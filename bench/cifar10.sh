#!/usr/bin/env bash
# CIFAR-10 results (RESULTS.md): the paper's pipeline with its random controls, and harden with its
# clean control, on the shipped cifar10-cnn. Reduced to fit 2 CPU cores (see RESULTS.md, CIFAR-10).
# Every step is skipped when its folder is finished, so re-running continues.
set -euo pipefail
IS=${IS:-.venv/bin/infoswarm}
OUT=${OUT:-runs/results}
LIMIT=${LIMIT:-24}          # first training images scanned by the paper's pipeline
M="--dataset cifar10 --model cifar10-cnn"
# The paper preset on CIFAR-10: tau 0.01, element FI >= 0.01 with the authors' epsilon in their units
# (raw 0..255 pixels), paper bounds, L-inf 0.15, 200 particles, 10 + 40 iterations, target "second".
P="$M --split train --limit $LIMIT --select fi --tau 0.01 --fi-threshold 0.01 --pixel-rule fi-eps --fi-eps-scale 255 --bounds paper --eps 0.15"
done_() { [ -f "$1/summary.json" ]; }
.venv/bin/python bench/fi_eps_scale.py --images 50 --out RESULTS.md
done_ $OUT/cifar10-paper        || $IS attack $P --particles 200 --iterations 10 --restart-iterations 40 --out $OUT/cifar10-paper
done_ $OUT/cifar10-paper-start  || $IS attack $P --particles 200 --iterations 0 --no-restart --out $OUT/cifar10-paper-start
done_ $OUT/cifar10-paper-1draw  || $IS attack $P --particles 1 --iterations 0 --no-restart --out $OUT/cifar10-paper-1draw
.venv/bin/python bench/paper_pipeline.py --out RESULTS.md --section cifar10-paper \
    --run "mFI-PSO, paper preset=$OUT/cifar10-paper" \
    --run "control: the swarm's random start only (best of 200 random draws, no search)=$OUT/cifar10-paper-start" \
    --run "control: one random draw in the paper box=$OUT/cifar10-paper-1draw"
# harden: reduced attack and a one-epoch fine-tune, with the clean fine-tuning control
H="$M --limit ${HLIMIT:-40} --particles 100 --iterations 10 --restart-iterations 10 --eval-images ${EVAL:-8} --lr 0.01 --epochs 1 --milestones 1"
$IS harden $H --method fi   --out $OUT/cifar10-fi
$IS harden $H --method none --out $OUT/cifar10-none
.venv/bin/python bench/results.py --out RESULTS.md --section cifar10 --harden $OUT/cifar10-fi $OUT/cifar10-none
