#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The main job. Today: builds regcache and runs the hit-path benchmark
# against UCX's ucs_rcache, printing the ratio table (docs/benchmarks.md).
# The end-to-end RDMA ping-pong over Soft-RoCE in the qemu rig replaces this
# when it lands (issue 4).
#
# Usage: scripts/run-main.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target hit_path_bench
mkdir -p results
./build/bench/hit_path_bench --benchmark_min_time=0.5 \
  --benchmark_out=results/hit_path.json --benchmark_out_format=json
python3 bench/compare_ratios.py results/hit_path.json
