# SPDX-License-Identifier: BSD-2-Clause
# The regcache kernel module, built once per kernel of the VM rig, out of
# the source tree (each build folder has its own objects; the module's own
# `make dkms-source` copies what a build needs):
#
#   target     kernel                                   folder
#   kmod       the rig's default: the newest installed   BUILD/kmod
#              (Debian 12's 6.1); in ALL when its
#              headers are installed
#   kmod-6.12  Debian's 6.12 (bookworm-backports)        BUILD/kmod-6.12
#   kmod-7     Debian's 7.x (trixie-backports)           BUILD/kmod-7
#
# kmod-6.12 and kmod-7 fetch their kernel (and 7.x's build root) with
# scripts/fetch-kernels.sh on first use, into a cache that survives between
# runs, never installing it; they are not in ALL. Every build fails on a
# compiler warning.
#
# Included from the top-level CMakeLists.txt: sets, for everyone,
#   REGCACHE_VM_RUNNER   tests/vm/run-in-vm.sh
#   REGCACHE_VM_KVER     the default kernel's version ("" when none)
#   REGCACHE_VM_KERNELS  the rig's kernels: default 6.12 7
# and regcache_kmod_for(KERNEL <target-var> <ko-var>).

set(REGCACHE_VM_RUNNER ${CMAKE_SOURCE_DIR}/tests/vm/run-in-vm.sh)
set(REGCACHE_VM_KERNELS default 6.12 7)

# The kernel the VM boots by default, which is also the one `kmod` is for.
execute_process(COMMAND ${REGCACHE_VM_RUNNER} --print-kver
                OUTPUT_VARIABLE REGCACHE_VM_KVER OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE _vm_kver_status)
if(NOT _vm_kver_status EQUAL 0)
  set(REGCACHE_VM_KVER "")
  message(STATUS "VM tests: no bootable kernel (scripts/install-deps.sh installs one); "
                 "ctest -L vm will fail")
endif()

# regcache_kmod_for(KERNEL TARGET_VAR KO_VAR): the target that builds the
# module for KERNEL (default, 6.12 or 7) and the module file it makes. The
# target is empty when the module cannot be built here (no source, or no
# default kernel).
function(regcache_kmod_for kernel target_var ko_var)
  if(kernel STREQUAL "default")
    set(name kmod)
  else()
    set(name kmod-${kernel})
  endif()
  if(TARGET ${name})
    set(${target_var} ${name} PARENT_SCOPE)
  else()
    set(${target_var} "" PARENT_SCOPE)
  endif()
  set(${ko_var} ${CMAKE_BINARY_DIR}/${name}/regcache.ko PARENT_SCOPE)
endfunction()

file(GLOB _kmod_makefile CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kmod_notifier/Makefile)
if(NOT _kmod_makefile)
  return()
endif()
file(GLOB _kmod_sources CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/src/kmod_notifier/*.c
     ${CMAKE_SOURCE_DIR}/src/kmod_notifier/*.h
     ${CMAKE_SOURCE_DIR}/src/kmod_notifier/Kbuild
     ${CMAKE_SOURCE_DIR}/include/regcache/kmod_uapi.h)

# ------------------------------------------------ the default kernel: kmod
if(REGCACHE_VM_KVER)
  set(_kmod_dir ${CMAKE_BINARY_DIR}/kmod)
  add_custom_command(
    OUTPUT ${_kmod_dir}/regcache.ko
    COMMAND make -s -C ${CMAKE_SOURCE_DIR}/src/kmod_notifier dkms-source
            DKMS_DIR=${_kmod_dir}
    COMMAND make -C ${_kmod_dir} KVER=${REGCACHE_VM_KVER} KCFLAGS=-Werror
    DEPENDS ${_kmod_makefile} ${_kmod_sources}
    COMMENT "Building the regcache kernel module for ${REGCACHE_VM_KVER}"
    VERBATIM)
  if(EXISTS /lib/modules/${REGCACHE_VM_KVER}/build)
    add_custom_target(kmod ALL DEPENDS ${_kmod_dir}/regcache.ko)
  else()
    message(STATUS "VM tests: no headers for ${REGCACHE_VM_KVER}: target kmod "
                   "is not in ALL (scripts/install-deps.sh installs them)")
    add_custom_target(kmod DEPENDS ${_kmod_dir}/regcache.ko)
  endif()
endif()

# ------------------------------------------- the fetched kernels: kmod-K
# Always run: scripts/build-kmod.sh fetches the kernel if it is not cached
# and rebuilds only what changed.
foreach(_kernel 6.12 7)
  add_custom_target(kmod-${_kernel}
    COMMAND ${CMAKE_SOURCE_DIR}/scripts/build-kmod.sh --kernel ${_kernel}
            --out ${CMAKE_BINARY_DIR}/kmod-${_kernel}
    DEPENDS ${_kmod_makefile} ${_kmod_sources}
    COMMENT "Building the regcache kernel module for Debian's ${_kernel} kernel"
    VERBATIM)
endforeach()
