#!/usr/bin/env bash
# The sparse-attack benchmark behind BENCHMARKS.md (issue 11), sized for 2 CPU cores in about an
# hour: two streams run side by side (A: mnist-cnn; B: CIFAR-10, Fashion-MNIST, the PGD-trained
# MNIST model), each writing its own file; the sections are then copied into BENCHMARKS.md with
# `python bench/merge_sections.py`. Re-running a stream repeats it (one seed, no resume).
#   PGD_MODEL: weights of mnist-cnn fine-tuned with `infoswarm harden --method pgd` (see RESULTS.md
#   and the command below); the stream skips that model when the file is absent.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench-attack}
PGD_MODEL=${PGD_MODEL:-runs/mnist-pgd/model.safetensors}
mkdir -p "$OUT"
B="$PY bench/attack.py --images 100"
stream_a() {
  $B --out "$OUT/a.md" --section attack-mnist --models mnist-cnn --ks 1,3,5,10,20 --budgets 1000 \
     --modes untargeted,targeted --methods sparse-swarm,sparse-rs,pgd0,onepixel,jsma,random
  $B --out "$OUT/a.md" --section attack-mnist-p90 --models mnist-cnn --ks 20 --budgets 10000 \
     --modes targeted-p90 --methods sparse-swarm,sparse-rs,random
  $B --out "$OUT/a.md" --section attack-mnist-10k --models mnist-cnn --ks 1,3 --budgets 10000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,random
  $B --out "$OUT/a.md" --section attack-ablation --models mnist-cnn --budgets 1000 --ablation
  # the paper preset on the mnist-cnn training selection, both measures (reduced: first 1,500 images)
  $PY -m infoswarm attack --dataset mnist --model mnist-cnn --split train --limit 1500 --preset paper \
     --out "$OUT/paper-mnist-train" --overwrite
}
stream_b() {
  $B --out "$OUT/b.md" --section attack-cifar10 --models cifar10-cnn --ks 5,10,20 --budgets 1000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,pgd0,random
  $B --out "$OUT/b.md" --section attack-fashion --models fashion-cnn --ks 1,5,10,20 --budgets 1000 \
     --modes untargeted,targeted --methods sparse-swarm,sparse-rs,pgd0,onepixel,random
  if [ -f "$PGD_MODEL" ]; then
    $B --out "$OUT/b.md" --section attack-mnist-pgd --models "mnist-pgd=mnist-cnn:$PGD_MODEL" --ks 5,10,20 \
       --budgets 1000 --modes untargeted,targeted --methods sparse-swarm,sparse-rs,pgd0,random
  fi
  $B --out "$OUT/b.md" --section attack-mnist-paper --models mnist-cnn --ks 10,20 --budgets 1000 \
     --modes untargeted --methods mfipso-paper,random
  $PY bench/attack.py --images 50 --out "$OUT/b.md" --section attack-cifar10-targeted --models cifar10-cnn \
     --ks 10,20 --budgets 1000 --modes targeted --methods sparse-swarm,sparse-rs,pgd0,random
}
case "${1:-both}" in
  a) stream_a ;;
  b) stream_b ;;
  both) stream_a & stream_b & wait ;;
esac
