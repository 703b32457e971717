#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Checks that the library's parts include only what they may use, so the
# dependencies run one way (HACKING.md):
#   api (src/regcache/*.cc) -> core, odp, registrar, monitor, base
#   core      -> monitor, base           never odp, registrar, ibverbs, libfabric
#   monitor   -> base                    never core, registrar, odp
#   registrar -> base                    never core, monitor, odp
#   odp       -> registrar, base         never core, monitor
#   base      -> nothing of the library
#   integrations/libfabric (the fi plug-in) -> monitor, base; never core
#   integrations/preload (the interposer)   -> the C API, registrar, base,
#                                              core (for the kernel's count)
# Project headers are named by their part ("core/cache.h"); a bare name
# ("cache.h") is refused too, since it hides which part it comes from.
#
# Usage: check-layout.sh [SOURCE_DIR]   (default: the checkout holding this)
# Exit status: 0 when every include is allowed; 1 with one line per
# offending include otherwise.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"

# part ; folder ; project includes allowed (regex on the quoted path) ;
# public headers allowed ; system includes refused (regex on the <path>)
rules=(
  "core;src/regcache/core;^(core|monitor|base)/;^regcache/regcache\.h$;^(infiniband|rdma)/"
  "monitor;src/regcache/monitor;^(monitor|base)/;^regcache/(regcache|kmod_uapi)\.h$;^(infiniband|rdma)/"
  "registrar;src/regcache/registrar;^(registrar|base)/;^regcache/(regcache|ibverbs|libfabric)\.h$;"
  "base;src/regcache/base;^base/;^regcache/regcache\.h$;^(infiniband|rdma)/"
  "odp;src/odp;^(odp|registrar|base)/;^regcache/(regcache|ibverbs)\.h$;^rdma/"
  "libfabric-plugin;src/integrations/libfabric;^(integrations/libfabric|monitor|base)/;^regcache/(regcache|kmod_uapi)\.h$;^infiniband/"
  "preload;src/integrations/preload;^(integrations/preload|core|registrar|base)/;^regcache/(regcache|ibverbs)\.h$;^rdma/"
)

bad=0
for rule in "${rules[@]}"; do
  IFS=';' read -r part dir allowed public refused <<<"$rule"
  [[ -d $dir ]] || { echo "check-layout: no folder $dir" >&2; exit 1; }
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    text=${rest#*:}
    if [[ $text =~ \#include\ *\"([^\"]+)\" ]]; then
      inc=${BASH_REMATCH[1]}
      if ! [[ $inc =~ $allowed || $inc =~ $public ]]; then
        echo "$file:$line: $part may not include \"$inc\""
        bad=1
      fi
    elif [[ $text =~ \#include\ *\<([^\>]+)\> ]]; then
      inc=${BASH_REMATCH[1]}
      if [[ -n $refused && $inc =~ $refused ]]; then
        echo "$file:$line: $part may not include <$inc>"
        bad=1
      fi
    fi
  done < <(grep -Hn '^[[:space:]]*#[[:space:]]*include' "$dir"/*.h "$dir"/*.cc 2>/dev/null || true)
done

if ((bad)); then
  echo "check-layout: includes that break the layering above (see HACKING.md)" >&2
  exit 1
fi
echo "check-layout: every include of core, monitor, registrar, base, odp and the integrations is allowed"
