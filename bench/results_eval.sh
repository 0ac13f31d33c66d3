#!/usr/bin/env bash
# Which defence wins against which attack (RESULTS.md): one attack run on vulnerable test images
# of the original model, then `infoswarm evaluate` of the original and every hardened model.
set -euo pipefail
IS=${IS:-.venv/bin/infoswarm}
OUT=${OUT:-runs/results}
DATASETS=${DATASETS:-mnist}
for ds in $DATASETS; do
  model=$([ "$ds" = mnist ] && echo mnist-cnn || echo fashion-cnn)
  limit=$([ "$ds" = mnist ] && echo 1500 || echo 200)  # 77 and 67 vulnerable test images
  [ -f $OUT/$ds-attack/summary.json ] || $IS attack --dataset $ds --model $model --split test --limit $limit \
      --tau 0.01 --pixels 20 --eps 0.3 --particles 50 --iterations 10 --restart-iterations 10 --out $OUT/$ds-attack
  evals=()
  for m in original fi random fgsm-rs pgd fi-repeat10 none fi-paper none-paper; do
    w=$([ $m = original ] && echo "" || echo "--weights $OUT/$ds-$m/model.safetensors")
    [ $m = original ] || [ -f $OUT/$ds-$m/summary.json ] || continue
    [ -f $OUT/$ds-eval-$m/summary.json ] || $IS evaluate --model $model $w --against $OUT/$ds-attack \
        --baselines sparse-rs,pgd --out $OUT/$ds-eval-$m
    evals+=($OUT/$ds-eval-$m)
  done
  .venv/bin/python bench/results.py --out RESULTS.md --section $ds-evaluate --evaluate "${evals[@]}"
done
