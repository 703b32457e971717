#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Fetches the Debian kernels the VM rig boots besides the host's own, without
# installing them: the newest linux-image-amd64 of bookworm-backports (6.12)
# and of trixie-backports (7.x), found in the package index at run time,
# downloaded with apt under a private configuration (the host's apt state is
# never touched), unpacked with dpkg -x and indexed with depmod -b. 6.12's
# headers build modules on the host; 7.x's kbuild needs trixie's glibc and
# gcc-14, so for 7.x it also makes a minimal trixie build root (debootstrap
# minbase + that kernel's linux-headers), kept as a tarball and unpacked.
# Everything lives in a cache folder that survives between runs; a kernel
# already there is not fetched again, and the index is read again once a day
# (--refresh: now) so a newer kernel of the series is picked up.
#
# Usage: scripts/fetch-kernels.sh [options] KERNEL...
#   KERNEL             6.1 (the host's own Debian kernel, installed by
#                      scripts/install-deps.sh), 6.12, 7, or all
#   --cache-dir DIR    default $REGCACHE_KERNEL_CACHE, else
#                      ${XDG_CACHE_HOME:-~/.cache}/regcache-kernels
#   --print            print shell assignments per kernel (KERNEL_SERIES,
#                      KVER, KERNEL_ROOT, VMLINUZ, KDIR, BUILD_ROOT) on stdout
#   --no-build-root    do not make 7.x's module build root (booting needs none)
#   --refresh          read the package index now, whatever its age
#   --offline          use only what is cached; fail if a kernel is not
#   -h, --help         this text
# Exit status: 0 when every KERNEL is ready; 1 when one could not be
# fetched; 2 on bad usage.
set -euo pipefail

usage() { sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "fetch-kernels: $*" >&2; exit 1; }
log() { echo "fetch-kernels: $*" >&2; }
bad_usage() { echo "fetch-kernels: $*" >&2; echo "see: $0 --help" >&2; exit 2; }

cache=${REGCACHE_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/regcache-kernels}
print=0 build_root=1 refresh=0 offline=0
kernels=()
while (($#)); do
  case $1 in
    --cache-dir) [[ -n ${2:-} ]] || bad_usage "--cache-dir needs a folder"; cache=$2; shift 2 ;;
    --cache-dir=*) cache=${1#*=}; [[ -n $cache ]] || bad_usage "--cache-dir needs a folder"; shift ;;
    --print) print=1; shift ;;
    --no-build-root) build_root=0; shift ;;
    --refresh) refresh=1; shift ;;
    --offline) offline=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) bad_usage "unknown option $1" ;;
    all) kernels+=(6.1 6.12 7); shift ;;
    6.1|6.12|7) kernels+=("$1"); shift ;;
    *) bad_usage "unknown kernel '$1' (choose 6.1, 6.12, 7 or all)" ;;
  esac
done
((${#kernels[@]})) || bad_usage "name at least one kernel: 6.1, 6.12, 7 or all"
((refresh && offline)) && bad_usage "--refresh and --offline contradict each other"

# The series: the suite its metapackage comes from, and where modules for
# it are built (the host, or a build root of that Debian release).
suite_of() { case $1 in 6.12) echo bookworm-backports ;; 7) echo trixie-backports ;; esac; }
root_release_of() { case $1 in 7) echo trixie ;; esac; }

# ------------------------------------------------------------------ 6.1
# The host's own kernel: the newest 6.1 in /lib/modules with its vmlinuz.
host_kernel() {
  local kver
  for kver in $(find /lib/modules -mindepth 1 -maxdepth 1 -name '6.1.*' -printf '%f\n' 2>/dev/null | sort -rV); do
    if [[ -r /boot/vmlinuz-$kver && -d /lib/modules/$kver/kernel ]]; then
      echo "$kver"
      return 0
    fi
  done
  return 1
}

# ------------------------------------------------------- apt, privately
apt_dir=$cache/apt
APT_OPTS=()
# The Debian archive the host's own apt uses (never a hard-coded host).
debian_mirror() {
  local uri codename
  if [[ -n ${REGCACHE_DEBIAN_MIRROR:-} ]]; then
    echo "$REGCACHE_DEBIAN_MIRROR"
    return 0
  fi
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk -v r="$codename" '$2 == r { print $1; exit }')
  [[ -n $uri ]] || return 1
  echo "${uri%/}"
}

apt_setup() {
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial}
  APT_OPTS=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
            -o Dir::Etc::SourceParts=/dev/null
            -o Dir::Etc::Preferences=/dev/null
            -o Dir::Etc::PreferencesParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists"
            -o "Dir::Cache=$apt_dir/cache"
            -o Acquire::Languages=none
            -o APT::Sandbox::User=root
            -o APT::Get::List-Cleanup=true)
  ((offline)) && return 0
  mirror=$(debian_mirror) ||
    die "cannot tell which Debian archive the host uses (apt-get indextargets); set REGCACHE_DEBIAN_MIRROR"
  [[ -r $keyring ]] || die "no $keyring (apt-get install debian-archive-keyring)"
  {
    echo "deb [signed-by=$keyring] $mirror bookworm-backports main"
    echo "deb [signed-by=$keyring] $mirror trixie-backports main"
  } > "$apt_dir/sources.list.new"
  if ! cmp -s "$apt_dir/sources.list.new" "$apt_dir/sources.list" 2>/dev/null; then
    mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
    refresh=1
  else
    rm -f "$apt_dir/sources.list.new"
  fi
  MIRROR=$mirror
}

index_read=0
# Reads the index when asked, when never read, or when a day old. Returns
# non-zero when it could not (offline, or the archive did not answer).
apt_update() {
  ((index_read)) && return 0
  ((offline)) && return 1
  local stamp=$apt_dir/updated
  if ((refresh)) || [[ ! -e $stamp ]] || [[ -n $(find "$stamp" -mmin +1440) ]]; then
    log "reading the package index (bookworm-backports, trixie-backports)"
    flock "$apt_dir/lock" apt-get "${APT_OPTS[@]}" -qq update >&2 || return 1
    touch "$stamp"
  fi
  index_read=1
}

# The kernel ABI name (e.g. 6.12.95+deb12-amd64) that the suite's
# linux-image-amd64 depends on.
resolve_kver() {
  local suite=$1 depends
  depends=$(apt-cache "${APT_OPTS[@]}" show "linux-image-amd64/$suite" 2>/dev/null |
            sed -n 's/^Depends: //p' | head -n1)
  grep -oE 'linux-image-[0-9][^ ,]*-amd64' <<<"$depends" | head -n1 | sed 's/^linux-image-//'
}

have_pkg() { apt-cache "${APT_OPTS[@]}" show "$1" >/dev/null 2>&1; }

# ------------------------------------------------ the kernel and modules
# KERNEL_ROOT/boot/vmlinuz-KVER, KERNEL_ROOT/lib/modules/KVER (depmod'ed)
# and, for a series built on the host, KERNEL_ROOT/usr/src/linux-headers-KVER.
fetch_kernel() {
  local series=$1 kver=$2 root=$cache/$kver tmp pkgs=() base deb
  [[ -e $root/.complete ]] && return 0
  ((offline)) && die "kernel $kver ($series) is not cached and --offline was given"
  log "fetching kernel $kver ($series) into $root"
  base=${kver%-amd64}
  if have_pkg "linux-image-$kver-unsigned"; then
    pkgs+=("linux-image-$kver-unsigned")
  else
    # Newer packaging: the image, its modules and its base files apart.
    for deb in linux-binary linux-modules linux-base; do
      have_pkg "$deb-$kver" && pkgs+=("$deb-$kver")
    done
  fi
  ((${#pkgs[@]})) || die "the index has no image package for $kver"
  if [[ -z $(root_release_of "$series") ]]; then
    pkgs+=("linux-headers-$kver" "linux-headers-$base-common" "linux-kbuild-$base")
  fi
  rm -rf "$root.tmp"
  mkdir -p "$root.tmp/debs"
  tmp=$root.tmp
  (cd "$tmp/debs" && flock "$apt_dir/lock" apt-get "${APT_OPTS[@]}" -qq download "${pkgs[@]}" >&2) ||
    die "apt-get download ${pkgs[*]} failed"
  for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$tmp/root"
  done
  rm -rf "$tmp/debs" "$tmp/root/usr/share/doc"
  # Since trixie the files sit under /usr/lib/modules (the vmlinuz too);
  # the host's depmod and modprobe look in ROOT/lib/modules.
  if [[ -d $tmp/root/usr/lib/modules/$kver && ! -e $tmp/root/lib/modules/$kver ]]; then
    mkdir -p "$tmp/root/lib/modules"
    mv "$tmp/root/usr/lib/modules/$kver" "$tmp/root/lib/modules/$kver"
  fi
  if [[ ! -e $tmp/root/boot/vmlinuz-$kver && -e $tmp/root/lib/modules/$kver/vmlinuz ]]; then
    mkdir -p "$tmp/root/boot"
    mv "$tmp/root/lib/modules/$kver/vmlinuz" "$tmp/root/boot/vmlinuz-$kver"
  fi
  [[ -r $tmp/root/boot/vmlinuz-$kver ]] || die "no boot/vmlinuz-$kver in ${pkgs[*]}"
  depmod -b "$tmp/root" "$kver" || die "depmod -b for $kver failed"
  local hdr=$tmp/root/usr/src/linux-headers-$kver
  if [[ -d $hdr ]]; then
    # The headers name their common half by absolute path: point it here.
    sed -i "s|^include /usr/src/|include $root/usr/src/|" "$hdr/Makefile"
    ln -sfn "../../../usr/src/linux-headers-$kver" "$tmp/root/lib/modules/$kver/build"
  fi
  mv "$tmp/root" "$root.new"
  rm -rf "$tmp" "$root"
  mv "$root.new" "$root"
  touch "$root/.complete"
}

# ---------------------------------------------------- 7.x's build root
# A minimal root of the kernel's own Debian release with its headers, for
# kbuild tools that the host's glibc and gcc cannot run. Kept as a tarball
# (the durable cache) and unpacked beside it.
make_build_root() {
  local series=$1 kver=$2 release dir tar tmp
  release=$(root_release_of "$series")
  dir=$cache/buildroot-$kver
  tar=$cache/buildroot-$kver.tar.zst
  [[ -e $dir/.complete ]] && return 0
  if [[ ! -s $tar ]]; then
    ((offline)) && die "no build root for $kver cached and --offline was given"
    command -v debootstrap >/dev/null || die "debootstrap missing (scripts/install-deps.sh)"
    ((EUID == 0)) || die "making the build root needs root (debootstrap, chroot)"
    tmp=$cache/buildroot-$kver.tmp
    rm -rf "$tmp"
    log "making a $release build root with linux-headers-$kver (1-3 minutes)"
    debootstrap --variant=minbase --include=make,binutils,libc6-dev,kmod,xz-utils \
      "$release" "$tmp" "$MIRROR" > "$cache/debootstrap.log" 2>&1 ||
      die "debootstrap $release failed (see $cache/debootstrap.log)"
    cat > "$tmp/etc/apt/sources.list" <<EOF
deb $MIRROR $release main
deb $MIRROR $release-backports main
EOF
    cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
    in_root "$tmp" sh -c "apt-get -qq update &&
      DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends \
        -t $release-backports linux-headers-$kver >/dev/null && apt-get clean" \
      >> "$cache/debootstrap.log" 2>&1 ||
      die "installing linux-headers-$kver in the build root failed (see $cache/debootstrap.log)"
    rm -rf "$tmp"/var/lib/apt/lists/*
    log "packing the build root into $tar"
    tar --zstd -C "$tmp" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  else
    log "unpacking the build root from $tar"
    rm -rf "$dir"
    mkdir -p "$dir"
    tar --zstd -C "$dir" -xf "$tar"
  fi
  touch "$dir/.complete"
}

# Runs a command chrooted into ROOT with its own /proc (objtool reads it),
# in a private mount namespace, so nothing stays mounted afterwards.
in_root() {
  local root=$1
  shift
  unshare --mount --propagation private -- sh -c \
    'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" "$@"
}

# -------------------------------------------------------------------- main
mkdir -p "$cache"
apt_set=0
for series in "${kernels[@]}"; do
  # One fetch of a series at a time per cache (ctest may build two kernels'
  # modules at once); apt itself is serialized on $apt_dir/lock.
  exec 9> "$cache/lock-$series"
  flock 9
  if [[ $series == 6.1 ]]; then
    kver=$(host_kernel) ||
      die "no 6.1 kernel on the host (scripts/install-deps.sh installs linux-image-amd64)"
    if ((print)); then
      printf 'KERNEL_SERIES=%q KVER=%q KERNEL_ROOT=/ VMLINUZ=%q KDIR=%q BUILD_ROOT=\n' \
        "$series" "$kver" "/boot/vmlinuz-$kver" "/lib/modules/$kver/build"
    fi
    continue
  fi
  ((apt_set)) || { apt_setup; apt_set=1; }
  suite=$(suite_of "$series")
  kver=""
  if apt_update; then
    kver=$(resolve_kver "$suite")
    [[ -n $kver ]] || die "the index of $suite names no linux-image-amd64 kernel"
    echo "$kver" > "$cache/series-$series"
  elif [[ -s $cache/series-$series ]]; then
    kver=$(cat "$cache/series-$series")
    ((offline)) || log "could not read the package index; using the cached $kver"
  else
    die "no $series kernel cached and the package index could not be read"
  fi
  [[ $kver == "$series".* ]] || die "$suite's kernel is $kver, not a $series kernel"
  fetch_kernel "$series" "$kver"
  build=""
  if [[ -n $(root_release_of "$series") ]]; then
    build=$cache/buildroot-$kver
    ((build_root)) && make_build_root "$series" "$kver"
    kdir=/usr/src/linux-headers-$kver     # inside the build root
  else
    kdir=$cache/$kver/lib/modules/$kver/build
  fi
  if ((print)); then
    printf 'KERNEL_SERIES=%q KVER=%q KERNEL_ROOT=%q VMLINUZ=%q KDIR=%q BUILD_ROOT=%q\n' \
      "$series" "$kver" "$cache/$kver" "$cache/$kver/boot/vmlinuz-$kver" "$kdir" "$build"
  else
    log "$series: $kver ready in $cache/$kver${build:+ (modules built in $build)}"
  fi
  exec 9>&-
done
