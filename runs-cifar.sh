#!/usr/bin/env bash
set -x
cd /work/wt-int
export INFOSWARM_DATA=/work/shared/data
time bash bench/cifar10.sh
time .venv/bin/python bench/influence.py --images 64 --repeats 3 --out BENCHMARKS.md
time .venv/bin/infoswarm demo --dataset cifar10 --limit 100 --particles 50 --iterations 5 --restart-iterations 5 --out runs/demo-cifar10 --overwrite
echo ALL-DONE
