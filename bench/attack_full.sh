#!/usr/bin/env bash
# The sparse-attack benchmark behind BENCHMARKS.md (issue 11), sized for 2 shared CPU cores in
# about an hour (50-100 images per model, fewer k and budgets than the full plan): two streams run side by side (A: mnist-cnn; B: CIFAR-10, Fashion-MNIST, the PGD-trained
# MNIST model), each writing its own file; the sections are then copied into BENCHMARKS.md with
# `python bench/merge_sections.py`. Re-running a stream repeats it (one seed, no resume).
#   PGD_MODEL: weights of mnist-cnn fine-tuned with `infoswarm harden --method pgd` (see RESULTS.md
#   and the command below); the stream skips that model when the file is absent.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench-attack}
PGD_MODEL=${PGD_MODEL:-runs/mnist-pgd/model.safetensors}
mkdir -p "$OUT"
A="$PY bench/attack.py"
stream_a() {
  $A --images 100 --out "$OUT/a.md" --section attack-mnist --models mnist-cnn --ks 10,20,5,3,1 --budgets 1000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,pgd0,jsma,random
  $A --images 100 --out "$OUT/a.md" --section attack-mnist-targeted --models mnist-cnn --ks 10,20,5 --budgets 1000 \
     --modes targeted --methods sparse-swarm,sparse-rs,pgd0,jsma,random
  $A --images 50 --out "$OUT/a.md" --section attack-mnist-p90 --models mnist-cnn --ks 20 --budgets 10000 \
     --modes targeted-p90 --methods sparse-swarm,sparse-rs,random
  # what was tried against the min_prob 0.9 miss: CE loss, four particles (same images)
  $A --images 50 --out "$OUT/a.md" --section attack-mnist-p90-variants --models mnist-cnn --ks 20 --budgets 10000 \
     --modes targeted-p90 --methods "sparse-swarm:loss=ce,sparse-swarm:particles=4,random"
  $A --images 50 --out "$OUT/a.md" --section attack-mnist-10k --models mnist-cnn --ks 3 --budgets 10000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,random
  $A --images 50 --out "$OUT/a.md" --section attack-ablation --models mnist-cnn --budgets 1000 --ablation
}
stream_b() {
  $A --images 50 --out "$OUT/b.md" --section attack-cifar10 --models cifar10-cnn --ks 5,10,20 --budgets 1000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,pgd0,random
  $A --images 50 --out "$OUT/b.md" --section attack-fashion --models fashion-cnn --ks 1,5,10,20 --budgets 1000 \
     --modes untargeted --methods sparse-swarm,sparse-rs,pgd0,random
  if [ -f "$PGD_MODEL" ]; then
    $A --images 50 --out "$OUT/b.md" --section attack-mnist-pgd --models "mnist-pgd=mnist-cnn:$PGD_MODEL" \
       --ks 5,10,20 --budgets 1000 --modes untargeted --methods sparse-swarm,sparse-rs,pgd0,random
  fi
  $A --images 50 --out "$OUT/b.md" --section attack-targeted-others --models fashion-cnn,cifar10-cnn --ks 10,20 \
     --budgets 1000 --modes targeted --methods sparse-swarm,sparse-rs,random
  $A --images 100 --out "$OUT/b.md" --section attack-mnist-more --models mnist-cnn --ks 1,10 --budgets 1000 \
     --modes untargeted --methods onepixel,mfipso-paper,random
  # the paper preset on the mnist-cnn training selection, both measures (reduced: first 1,000 images)
  $PY -m infoswarm attack --dataset mnist --model mnist-cnn --split train --limit 1000 --preset paper \
     --out "$OUT/paper-mnist-train" --overwrite
  # its controls: the swarm's random start alone (500 draws, no search) and a single random draw
  $PY -m infoswarm attack --dataset mnist --model mnist-cnn --split train --limit 1000 --preset paper \
     --iterations 0 --no-restart --out "$OUT/paper-mnist-train-start" --overwrite
  $PY -m infoswarm attack --dataset mnist --model mnist-cnn --split train --limit 1000 --preset paper \
     --particles 1 --iterations 0 --no-restart --out "$OUT/paper-mnist-train-1draw" --overwrite
  $PY bench/paper_pipeline.py --out RESULTS.md --section mnist-paper-train \
     --run "mFI-PSO, paper preset (500 particles, 10 + 40 iterations)=$OUT/paper-mnist-train" \
     --run "control: the swarm's random start only (best of 500 random draws, no search)=$OUT/paper-mnist-train-start" \
     --run "control: one random draw=$OUT/paper-mnist-train-1draw"
}
case "${1:-both}" in
  a) stream_a ;;
  b) stream_b ;;
  both) stream_a & stream_b & wait ;;
esac
