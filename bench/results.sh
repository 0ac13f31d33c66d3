#!/usr/bin/env bash
# Hardening results (RESULTS.md). Every run is resumable: re-running this script continues
# where it stopped. Reduced from the paper's schedule to fit 2 CPU cores (see RESULTS.md).
set -euo pipefail
IS=${IS:-.venv/bin/infoswarm}
OUT=${OUT:-runs/results}
DATASETS=${DATASETS:-mnist}
for ds in $DATASETS; do
  model=$([ "$ds" = mnist ] && echo mnist-cnn || echo fashion-cnn)
  limit=$([ "$ds" = mnist ] && echo 6000 || echo 600)  # about 260 and 210 vulnerable images
  H="--dataset $ds --model $model --limit $limit --particles 100 --iterations 10 --restart-iterations 20 --eval-images 64 --lr 0.01"
  $IS harden $H --method fi      --epochs 3 --milestones 2 --out $OUT/$ds-fi
  $IS harden $H --method random  --epochs 3 --milestones 2 --out $OUT/$ds-random
  $IS harden $H --method fgsm-rs --epochs 1 --milestones 1 --out $OUT/$ds-fgsm-rs
  $IS harden $H --method pgd     --epochs 1 --milestones 1 --pgd-steps 5 --out $OUT/$ds-pgd
  $IS harden $H --method fi      --epochs 3 --milestones 2 --repeat 10 --out $OUT/$ds-fi-repeat10
  $IS harden $H --method none    --epochs 3 --milestones 2 --out $OUT/$ds-none   # control: clean fine-tuning
  paper=()
  if [ "$ds" = mnist ]; then  # closer to the paper: every training image a candidate, its 30-epoch schedule (about 45 min)
    P="--limit 60000 --lr 0.1 --epochs 30 --milestones 10,20"
    $IS harden $H $P --method fi   --out $OUT/$ds-fi-paper
    $IS harden $H $P --method none --out $OUT/$ds-none-paper
    paper=($OUT/$ds-fi-paper $OUT/$ds-none-paper)
  fi
  .venv/bin/python bench/results.py --out RESULTS.md --section $ds \
      --harden $OUT/$ds-fi $OUT/$ds-random $OUT/$ds-fgsm-rs $OUT/$ds-pgd $OUT/$ds-fi-repeat10 $OUT/$ds-none "${paper[@]}"
done
