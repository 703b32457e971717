#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs one command inside a throw-away qemu VM that boots Debian's kernel,
# with the host's root shared read-only over 9p, Soft-RoCE (rxe0 on a veth
# pair, 192.168.77.1/24) and, optionally, the regcache kernel module loaded.
# The command's stdout/stderr come back on ours, its exit status is ours; a
# kernel BUG/WARNING/Oops/leak after the module was loaded, a failed rmmod,
# a panic or a timeout fail the run with a message.  See tests/vm/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: run-in-vm.sh [options] -- CMD [ARGS...]
  --module KO        insmod KO before CMD (and make /dev/regcache 0666);
                     rmmod it afterwards (a failed rmmod fails the run)
  --module-args STR  module parameters for insmod, e.g. 'max_ranges=64'
  --no-rxe           do not create the veth pair and rxe0
  --timeout SEC      kill the VM after SEC seconds (default 600); the command
                     itself is stopped a little earlier so the log is kept
  --boot-timeout SEC a guest that has not started its side of the job SEC s
                     after qemu started (default 90, or --timeout if less) is
                     killed and booted again, up to --boot-attempts times in all
  --boot-attempts N  default 3; the run then fails with status 125
  --out DIR          keep the results here (stdout, stderr, console.log,
                     dmesg.txt, status...); default: a temporary folder,
                     removed after a clean run
  --rw DIR           also make host folder DIR writable in the guest (repeatable)
  --ro DIR           keep host folder DIR visible (read-only) even if it is
                     under /tmp, /run or /dev/shm, which are fresh tmpfs in the
                     guest (repeatable; the working directory and the
                     command's folder are kept without asking)
  --kernel KERNEL    boot Debian's 6.1 (the host's own kernel), 6.12 or 7
                     (fetched and cached by scripts/fetch-kernels.sh, never
                     installed); default $REGCACHE_VM_KERNEL, else the newest
                     kernel installed on the host
  --cache-dir DIR    where the initramfs is cached (default
                     $REGCACHE_VM_CACHE or ${XDG_CACHE_HOME:-~/.cache}/regcache-vm)
  --verbose          show the kernel console on stderr as the VM runs
  --print-kver       print the kernel version the VM boots, and exit
  -h, --help         this text
Exit status: the command's; 124 on timeout; 125 when the VM could not run the
command (boot failure, every boot stalled, panic, setup failure); 126 when the
command passed but the module did not unload or the kernel log shows a
BUG/WARNING/Oops/leak.
EOF
}

die() { echo "run-in-vm: $*" >&2; exit 125; }
log() { echo "run-in-vm: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=""
MODULE_ARGS=""
PRINT_KVER=0
NO_RXE=0
TIMEOUT=600
BOOT_TIMEOUT=90
BOOT_ATTEMPTS=3
OUT=""
RW_DIRS=()
RO_DIRS=()
CACHE_DIR=${REGCACHE_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/regcache-vm}
VERBOSE=0
KERNEL_CHOICE=${REGCACHE_VM_KERNEL:-}

while (($#)); do
  case $1 in
    --module) MODULE=${2:?--module needs a path}; shift 2 ;;
    --module=*) MODULE=${1#*=}; shift ;;
    --module-args) MODULE_ARGS=${2?--module-args needs a string}; shift 2 ;;
    --module-args=*) MODULE_ARGS=${1#*=}; shift ;;
    --print-kver) PRINT_KVER=1; shift ;;
    --no-rxe) NO_RXE=1; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --boot-timeout) BOOT_TIMEOUT=${2:?--boot-timeout needs seconds}; shift 2 ;;
    --boot-timeout=*) BOOT_TIMEOUT=${1#*=}; shift ;;
    --boot-attempts) BOOT_ATTEMPTS=${2:?--boot-attempts needs a count}; shift 2 ;;
    --boot-attempts=*) BOOT_ATTEMPTS=${1#*=}; shift ;;
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --rw) RW_DIRS+=("${2:?--rw needs a folder}"); shift 2 ;;
    --rw=*) RW_DIRS+=("${1#*=}"); shift ;;
    --ro) RO_DIRS+=("${2:?--ro needs a folder}"); shift 2 ;;
    --ro=*) RO_DIRS+=("${1#*=}"); shift ;;
    --kernel) KERNEL_CHOICE=${2:?--kernel needs 6.1, 6.12 or 7}; shift 2 ;;
    --kernel=*) KERNEL_CHOICE=${1#*=}; shift ;;
    --cache-dir) CACHE_DIR=${2:?--cache-dir needs a folder}; shift 2 ;;
    --cache-dir=*) CACHE_DIR=${1#*=}; shift ;;
    --verbose|-v) VERBOSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "run-in-vm: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
(($# || PRINT_KVER)) || { usage >&2; exit 2; }
case $KERNEL_CHOICE in
  ""|6.1|6.12|7) ;;
  *) echo "run-in-vm: unknown kernel '$KERNEL_CHOICE' (--kernel 6.1, 6.12 or 7)" >&2; exit 2 ;;
esac
if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((TIMEOUT < 10)); then
  die "--timeout must be >= 10 seconds"
fi
if ! [[ $BOOT_TIMEOUT =~ ^[0-9]+$ ]] || ((BOOT_TIMEOUT < 10)); then
  die "--boot-timeout must be >= 10 seconds"
fi
if ! [[ $BOOT_ATTEMPTS =~ ^[0-9]+$ ]] || ((BOOT_ATTEMPTS < 1 || BOOT_ATTEMPTS > 10)); then
  die "--boot-attempts must be 1 to 10"
fi
((BOOT_TIMEOUT <= TIMEOUT)) || BOOT_TIMEOUT=$TIMEOUT

# ---------------------------------------------------------------- the kernel
# --kernel: what scripts/fetch-kernels.sh fetched (KERNEL_ROOT/boot and
# KERNEL_ROOT/lib/modules; / for the host's own 6.1).  Otherwise the newest
# /lib/modules/KVER that has a /boot/vmlinuz-KVER to go with it.
find_kver() {
  local kver
  for kver in $(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -rV); do
    if [[ -r /boot/vmlinuz-$kver && -d /lib/modules/$kver/kernel ]]; then
      echo "$kver"
      return 0
    fi
  done
  return 1
}
KERNEL_ROOT=/
if [[ -n $KERNEL_CHOICE ]]; then
  VMLINUZ=""
  KVER=""
  fetched=$("$HERE/../../scripts/fetch-kernels.sh" --print --no-build-root "$KERNEL_CHOICE") ||
    die "no $KERNEL_CHOICE kernel: scripts/fetch-kernels.sh $KERNEL_CHOICE failed"
  eval "$fetched"
  KERNEL=$VMLINUZ
else
  KVER=${REGCACHE_VM_KVER:-$(find_kver)} ||
    die "no kernel: need /lib/modules/KVER with /boot/vmlinuz-KVER (scripts/install-deps.sh installs linux-image-amd64)"
  KERNEL=/boot/vmlinuz-$KVER
fi
if ((PRINT_KVER)); then
  echo "$KVER"
  exit 0
fi
[[ -r $KERNEL ]] || die "cannot read $KERNEL (run as root?)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/install-deps.sh)"
for tool in modprobe cpio; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh)"
done

# ------------------------------------------------------------- the initramfs
GUEST_MODULES=(virtio_pci 9pnet_virtio 9p veth crc32_generic rdma_rxe ib_uverbs rdma_ucm)
# Needed where they are modules; 7.x has no crc32_generic (crc32 is library
# code there).
OPTIONAL_MODULES=" crc32_generic "
MODPROBE=(modprobe -S "$KVER")
[[ $KERNEL_ROOT == / ]] || MODPROBE+=(-d "$KERNEL_ROOT")

find_busybox() {
  local bb
  for bb in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
    [[ -x $bb ]] || continue
    # It runs as PID 1 before anything else: it has to be static.
    if ! ldd "$bb" >/dev/null 2>&1; then echo "$bb"; return 0; fi
  done
  return 1
}

# Prints the module files to load, in dependency order, each once.
module_files() {
  local name deps="" line path
  declare -A seen=()
  for name in "${GUEST_MODULES[@]}"; do
    if ! line=$("${MODPROBE[@]}" --show-depends "$name" 2>/dev/null); then
      [[ $OPTIONAL_MODULES == *" $name "* ]] && continue
      die "${MODPROBE[*]} --show-depends $name failed"
    fi
    deps+=$line
    deps+=$'\n'
  done
  while read -r line; do
    [[ $line == insmod\ * ]] || continue   # "builtin NAME" needs nothing
    path=$(awk '{ print $2 }' <<<"$line")
    [[ -n ${seen[$path]:-} ]] && continue
    seen[$path]=1
    echo "$path"
  done <<<"$deps"
}

build_initramfs() {
  local dest=$1 busybox stage path name
  busybox=$(find_busybox) || die "no static busybox (apt-get install busybox-static)"
  stage=$(mktemp -d "$CACHE_DIR/stage.XXXXXX")
  mkdir -p "$stage"/{bin,modules,proc,sys,dev,host,results}
  cp "$busybox" "$stage/bin/busybox"
  ln -s busybox "$stage/bin/sh"
  install -m 0755 "$HERE/initramfs-init.sh" "$stage/init"
  MODULE_FILES=$(module_files)
  : > "$stage/modules/order"
  while read -r path; do
    name=$(basename "$path")
    # busybox insmod takes plain ELF: decompress here.
    case $name in
      *.ko.xz) xz -dc "$path" > "$stage/modules/${name%.xz}"; name=${name%.xz} ;;
      *.ko.zst) zstd -qdc "$path" > "$stage/modules/${name%.zst}"; name=${name%.zst} ;;
      *.ko.gz) gzip -dc "$path" > "$stage/modules/${name%.gz}"; name=${name%.gz} ;;
      *) cp "$path" "$stage/modules/$name" ;;
    esac
    echo "$name" >> "$stage/modules/order"
  done <<<"$MODULE_FILES"
  [[ -s $stage/modules/order ]] || die "found no modules for $KVER"
  # Uncompressed: the emulated CPU would spend longer unpacking than qemu
  # spends copying.
  (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
     cpio --null -o -H newc --quiet) > "$dest.tmp.$$"
  mv "$dest.tmp.$$" "$dest"
  rm -rf "$stage"
}

# The bzImage decompresses itself, which takes seconds on the emulated CPU.
# Debian's kernel has CONFIG_PVH, so qemu can start the plain ELF vmlinux
# directly: unpack it once, here.  On any surprise, boot the bzImage.
extract_vmlinux() {
  local bz=$1 dest=$2 setup_sects payload_offset start magic
  setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
  ((setup_sects)) || setup_sects=4
  payload_offset=$(od -An -tu4 -j $((0x248)) -N4 "$bz" | tr -d ' ')
  start=$(((setup_sects + 1) * 512 + payload_offset))
  magic=$(od -An -tx1 -j "$start" -N4 "$bz" | tr -d ' ')
  case $magic in
    fd377a58) command -v xz >/dev/null &&
                tail -c +$((start + 1)) "$bz" | xz -dcq --single-stream > "$dest.tmp.$$" ;;
    28b52ffd) command -v zstd >/dev/null &&
                tail -c +$((start + 1)) "$bz" | zstd -dcq 2>/dev/null > "$dest.tmp.$$" ;;
    1f8b*)    tail -c +$((start + 1)) "$bz" | gzip -dcq 2>/dev/null > "$dest.tmp.$$" ;;
    *) false ;;
  esac
  # An ELF with the PVH entry note (Xen note type 18) or nothing.
  if [[ $(head -c4 "$dest.tmp.$$" 2>/dev/null | od -An -tx1 | tr -d ' ') == 7f454c46 ]] &&
     { ! command -v readelf >/dev/null ||
       readelf -n "$dest.tmp.$$" | grep -q 'note type: (0x00000012)'; }; then
    mv "$dest.tmp.$$" "$dest"
  else
    rm -f "$dest.tmp.$$"
    : > "$dest"   # remembered: this kernel boots as a bzImage
  fi
}

mkdir -p "$CACHE_DIR"
CACHE_KEY=$( { echo "$KVER"; stat -c '%s %Y' "$KERNEL";
               echo "${GUEST_MODULES[*]}";
               cat "${BASH_SOURCE[0]}" "$HERE/initramfs-init.sh"; } |
             sha256sum | cut -c1-16)
INITRAMFS=$CACHE_DIR/initramfs-$KVER-$CACHE_KEY.cpio
if [[ ! -s $INITRAMFS ]]; then
  log "building initramfs for $KVER in $CACHE_DIR"
  build_initramfs "$INITRAMFS"
fi
KERNEL_KEY=$(stat -c '%s-%Y' "$KERNEL")
VMLINUX=$CACHE_DIR/vmlinux-$KVER-$KERNEL_KEY
if [[ ! -e $VMLINUX ]]; then
  extract_vmlinux "$KERNEL" "$VMLINUX" || true
fi
# Images of other kernels or script versions, unused for a day (another
# checkout may still be using a recent one).
find "$CACHE_DIR" -maxdepth 1 \( -name 'initramfs-*' -o -name 'vmlinux-*' \) \
  ! -name "${INITRAMFS##*/}" ! -name "${VMLINUX##*/}" -mtime +0 -delete 2>/dev/null || true
touch "$INITRAMFS" "$VMLINUX"
BOOT_KERNEL=$KERNEL
[[ -s $VMLINUX && -z ${REGCACHE_VM_BZIMAGE:-} ]] && BOOT_KERNEL=$VMLINUX

# --------------------------------------------------------------------- the job
qemu_path() {   # -virtfs takes comma-separated options: double any comma
  echo "${1//,/,,}"
}
sh_quote() {    # single-quoted for the guest's busybox sh
  [[ $1 != *"'"* && $1 != *$'\n'* ]] || die "unsupported character in: $1"
  printf "'%s'" "$1"
}

KEEP_OUT=1
if [[ -z $OUT ]]; then
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/regcache-vm.XXXXXX")
  KEEP_OUT=0
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
[[ $OUT != / ]] || die "--out cannot be /"
rm -rf "$OUT/job"
rm -f "$OUT"/console-stalled-boot*.log
mkdir -p "$OUT/job"

RW_REAL=()
for dir in "${RW_DIRS[@]}"; do
  [[ -d $dir ]] || die "--rw $dir: no such folder"
  dir=$(cd "$dir" && pwd -P)
  [[ $dir != *[[:space:]]* ]] || die "--rw $dir: spaces are not supported"
  RW_REAL+=("$dir")
done

# Folders the guest's tmpfs mounts would hide: bind them back, read-only.
RO_REAL=()
for dir in "${RO_DIRS[@]}"; do
  [[ -d $dir ]] || die "--ro $dir: no such folder"
done
candidates=("${RO_DIRS[@]}" "$PWD")
[[ $1 == /* && -d $(dirname "$1") ]] && candidates+=("$(dirname "$1")")
for dir in "${candidates[@]}"; do
  dir=$(cd "$dir" && pwd -P)
  case $dir in
    /tmp/*|/run/*|/dev/shm/*) ;;
    *) continue ;;
  esac
  [[ $dir != *[[:space:]]* ]] || die "$dir: spaces are not supported"
  RO_REAL+=("$dir")
done

MODULE_NAME=""
if [[ -n $MODULE ]]; then
  [[ -r $MODULE ]] || die "module $MODULE not found (build it: cmake --build BUILD --target kmod)"
  cp "$MODULE" "$OUT/job/module.ko"
  MODULE_NAME=$(modinfo -F name "$MODULE" 2>/dev/null || true)
  [[ -n $MODULE_NAME ]] || { MODULE_NAME=$(basename "$MODULE" .ko); MODULE_NAME=${MODULE_NAME//-/_}; }
fi

# The guest stops the command this long before the VM's deadline (counting
# its boot), so that rmmod, the kernel log and the verdict still make it out.
MARGIN=$((TIMEOUT / 4 < 30 ? TIMEOUT / 4 : 30))

# job/config is written at each boot (below), with that boot's VM_DEADLINE.
CONFIG=$(
  echo "OUT=$(sh_quote "$OUT")"
  echo "RW_DIRS=$(sh_quote "${RW_REAL[*]}")"
  echo "RO_DIRS=$(sh_quote "${RO_REAL[*]}")"
  echo "CWD=$(sh_quote "$PWD")"
  echo "MARGIN=$MARGIN"
  echo "MODULE_NAME=$(sh_quote "$MODULE_NAME")"
  echo "MODULE_ARGS=$(sh_quote "$MODULE_ARGS")"
  echo "NO_RXE=$NO_RXE"
)
# The environment, less what names host-only state.
for name in $(compgen -e); do
  case $name in
    PWD|OLDPWD|SHLVL|_|HOSTNAME|TMPDIR|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|\
    DISPLAY|WAYLAND_DISPLAY|MAKEFLAGS|MFLAGS|MAKELEVEL|SSH_*|TERM|PATH) continue ;;
  esac
  printf 'export %s=%q\n' "$name" "${!name}"
done > "$OUT/job/env"
printf 'export PATH=%q\n' "$PATH:/usr/local/sbin:/usr/sbin:/sbin" >> "$OUT/job/env"
{ printf 'CMD=('; printf '%q ' "$@"; printf ')\n'; } > "$OUT/job/cmd"
cp "$HERE/guest-run.sh" "$OUT/job/guest-run.sh"

# ---------------------------------------------------------------------- boot
# tsc=reliable: the kernel finds the emulated TSCs "unsynchronized" and falls
# back to the HPET, which makes every clock_gettime() a trip into qemu's
# device model (about 1 us instead of 0.25 us in the guest; the TSC that TCG
# emulates follows the host's, which is synchronized).
# No `quiet`: when a boot stalls, the console shows where (25 KB of boot
# messages cost no measurable time).
APPEND="console=ttyS0 panic=-1 tsc=reliable ${REGCACHE_VM_APPEND:-}"
QEMU=(qemu-system-x86_64 -machine q35 -cpu max -m "${REGCACHE_VM_MEM:-2G}"
      -smp "${REGCACHE_VM_SMP:-2}" -nographic -no-reboot -nic none
      -monitor none -serial "file:$OUT/console.log"
      -kernel "$BOOT_KERNEL" -initrd "$INITRAMFS"
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
      -virtfs "local,path=$(qemu_path "$OUT"),mount_tag=results,security_model=none,multidevs=remap")
for i in "${!RW_REAL[@]}"; do
  QEMU+=(-virtfs "local,path=$(qemu_path "${RW_REAL[$i]}"),mount_tag=rw$i,security_model=none,multidevs=remap")
done

PIDS=()
QEMU_PID=""
# Every background job (jobs -p also knows one whose $! was not yet saved
# when a signal came): TERM, a moment for qemu to go, then KILL for the
# process group that timeout(1) leads (itself and qemu).
# shellcheck disable=SC2317  # reached through the trap
cleanup() {
  local pids pid
  pids=$(jobs -p)
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  for _ in {1..50}; do
    pids=$(jobs -pr)
    [[ -n $pids ]] || return 0
    sleep 0.1
  done
  for pid in $pids; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# One boot: qemu under timeout(1) with the tails streaming the command's
# output.  Sets qemu_status and booted (1 once the guest's side of the job
# said "guest up" or gave up with a rig error).  A guest that has not got that
# far BOOT_TIMEOUT s after qemu started is stopped: booted stays 0.
boot_once() {
  local pid
  rm -f "$OUT"/{status,status.tmp,console.log,dmesg.txt,dmesg-findings.txt,kmemleak.txt,guest.log,rig-error,qemu.log}
  : > "$OUT/stdout"
  : > "$OUT/stderr"
  { echo "$CONFIG"; echo "VM_DEADLINE=$(($(date +%s) + TIMEOUT))"; } > "$OUT/job/config"
  booted=0
  qemu_status=0
  local t0=$SECONDS append=$APPEND
  # For the rig's own test of the watchdog (smoke/boot-stall.sh): the first
  # REGCACHE_VM_TEST_STALL_BOOTS boots run a PID 1 that only sleeps.
  if ((attempt <= ${REGCACHE_VM_TEST_STALL_BOOTS:-0})); then
    append+=" rdinit=/bin/busybox sleep 100000"
  fi
  timeout --kill-after=5 "$TIMEOUT" "${QEMU[@]}" -append "$append" \
    < /dev/null > "$OUT/qemu.log" 2>&1 &
  QEMU_PID=$!
  PIDS=("$QEMU_PID")
  # Stream the command's output as the guest writes it.
  tail -n +1 -s 0.2 -f --pid="$QEMU_PID" "$OUT/stdout" &
  PIDS+=($!)
  tail -n +1 -s 0.2 -f --pid="$QEMU_PID" "$OUT/stderr" >&2 &
  PIDS+=($!)
  if ((VERBOSE)); then
    touch "$OUT/console.log"
    tail -n +1 -s 0.2 -f --pid="$QEMU_PID" "$OUT/console.log" >&2 &
    PIDS+=($!)
  fi
  # The boot watchdog: guest-run.sh writes guest.log first thing.
  while kill -0 "$QEMU_PID" 2>/dev/null; do
    if [[ -s $OUT/guest.log || -s $OUT/rig-error ]]; then
      booted=1
      break
    fi
    if ((SECONDS - t0 >= BOOT_TIMEOUT)); then
      kill -TERM "$QEMU_PID" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  wait "$QEMU_PID" || qemu_status=$?
  # A guest that reached guest-run.sh while the watchdog was stopping it.
  [[ -s $OUT/guest.log || -s $OUT/rig-error ]] && booted=1
  # The tails stop on their own once they have read everything.
  for pid in "${PIDS[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  QEMU_PID=""
}

started=$SECONDS
attempt=1
while :; do
  boot_once
  ((booted || attempt >= BOOT_ATTEMPTS)) && break
  # A stalled boot (never seen on the build machine in hundreds of boots,
  # seen once in CI with the console silent): keep its console, say so, and
  # boot again.  The command has not started, so nothing of it is repeated.
  cp "$OUT/console.log" "$OUT/console-stalled-boot$attempt.log" 2>/dev/null || true
  log "BOOT STALLED: the guest did not start its side of the job within ${BOOT_TIMEOUT} s" \
      "(attempt $attempt of $BOOT_ATTEMPTS); end of its console" \
      "(kept in $OUT/console-stalled-boot$attempt.log):"
  tail -n 25 "$OUT/console.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
  KEEP_OUT=1
  attempt=$((attempt + 1))
  log "booting again (attempt $attempt of $BOOT_ATTEMPTS)"
done
elapsed=$((SECONDS - started))

# ------------------------------------------------------------------- verdict
show_console() {
  log "last lines of the kernel console ($OUT/console.log):"
  tail -n "${1:-40}" "$OUT/console.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
  [[ -s $OUT/qemu.log ]] && { log "qemu said:"; sed 's/^/  | /' "$OUT/qemu.log" >&2; }
  KEEP_OUT=1
}

if ((!booted)); then
  log "VM BOOT STALLED: the guest did not start its side of the job within" \
      "${BOOT_TIMEOUT} s in any of $BOOT_ATTEMPTS attempts"
  show_console
  log "results kept in $OUT"
  exit 125
fi
if ((qemu_status == 124 || qemu_status == 137)); then
  log "TIMEOUT: the VM was killed after ${TIMEOUT} s"
  show_console
  [[ -s $OUT/guest.log ]] && sed 's/^/  guest| /' "$OUT/guest.log" >&2
  log "results kept in $OUT"
  exit 124
fi
if [[ ! -s $OUT/status ]]; then
  if [[ -s $OUT/rig-error ]]; then
    log "VM SETUP FAILED: $(cat "$OUT/rig-error")"
  elif grep -q 'Kernel panic' "$OUT/console.log" 2>/dev/null; then
    log "KERNEL PANIC before the command finished"
  else
    log "the VM stopped before the command finished (qemu exit $qemu_status)"
  fi
  show_console 60
  [[ -s $OUT/guest.log ]] && sed 's/^/  guest| /' "$OUT/guest.log" >&2
  if [[ -s $OUT/dmesg.txt ]]; then
    log "end of the kernel log ($OUT/dmesg.txt):"
    tail -n 15 "$OUT/dmesg.txt" | sed 's/^/  | /' >&2
  fi
  log "results kept in $OUT"
  exit 125
fi

cmd_status=1 cmd_timed_out=0 rmmod_status=0 dmesg_status=0
# shellcheck source=/dev/null
source "$OUT/status"
final=$cmd_status
if ((cmd_timed_out)); then
  log "TIMEOUT: the guest stopped the command (--timeout $TIMEOUT, less boot and a ${MARGIN} s margin)"
  final=124
fi
if ((rmmod_status != 0)); then
  log "FAILED: rmmod $MODULE_NAME exited $rmmod_status:"
  grep -A3 'rmmod' "$OUT/guest.log" | sed 's/^/  | /' >&2 || true
  ((final != 0)) || final=126
fi
if ((dmesg_status != 0)); then
  log "FAILED: the kernel log shows trouble after the checkpoint ($OUT/dmesg.txt):"
  sed 's/^/  | /' "$OUT/dmesg-findings.txt" >&2
  log "full kernel log after the checkpoint:"
  sed -n '/regcache-vm: checkpoint/,$p' "$OUT/dmesg.txt" | tail -n 80 | sed 's/^/  | /' >&2
  ((final != 0)) || final=126
fi
((final == 0)) || KEEP_OUT=1
log "command exited $cmd_status; VM run took ${elapsed} s; verdict $final${MODULE_NAME:+ (module $MODULE_NAME)}"
if ((KEEP_OUT)); then
  ((final == 0)) || log "results kept in $OUT"
else
  rm -rf "$OUT"
fi
exit "$final"
