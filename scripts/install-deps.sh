#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Installs every Debian package regcache needs to build, test and benchmark:
# the C++ toolchain and test libraries, CLI11 and nlohmann-json (the tools'
# command lines and JSON), the RDMA userspace stack (rdma-core, libfabric,
# UCX, perftest), the unmodified clients the integration tests run
# (ucx_perftest, fi_pingpong, Open MPI) and the VM test rig (qemu, Debian's
# kernel with headers, busybox; debootstrap, pahole and zstd for the other
# kernels that scripts/fetch-kernels.sh fetches, never installs).
# Idempotent and quiet; when everything is already there it never touches
# apt, so re-runs take a fraction of a second.
#
# Usage: scripts/install-deps.sh        (as root, or with sudo available)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang clang-format
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  libibverbs-dev librdmacm-dev libfabric-dev libfabric-bin libucx-dev
  ucx-utils openmpi-bin libopenmpi-dev
  rdma-core ibverbs-utils ibverbs-providers perftest
  groff-base man-db
  qemu-system-x86 linux-image-amd64 linux-headers-amd64
  busybox-static kmod cpio iproute2 python3
  debootstrap dwarves zstd xz-utils
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || {
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  }
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
