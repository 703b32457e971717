# SPDX-License-Identifier: BSD-2-Clause
# regcache_add_vm_test(): a ctest test that runs a command inside the qemu
# rig (tests/vm/run-in-vm.sh; tests/vm/README.md), on one or more of the
# rig's kernels. Included from the top-level CMakeLists.txt after
# RegcacheKmod.cmake, so every folder can register its own VM tests.
#
# regcache_add_vm_test(NAME name COMMAND cmd [args...]
#                      [KERNELS default|6.12|7 ...]
#                      [MODULE ON|OFF] [MODULE_ARGS "name=value ..."]
#                      [NO_RXE] [TIMEOUT seconds] [LABELS label...]
#                      [WORKING_DIRECTORY dir] [RW dir...])
#
# One test per kernel in KERNELS (default: `default`, the rig's default
# kernel, Debian 12's 6.1):
#   kernel    test name    label    module (MODULE ON)       fixture
#   default   name         vm       BUILD/kmod/regcache.ko   vm_kmod
#   6.12      name-6.12    vm-6.12  BUILD/kmod-6.12/...      vm_kmod-6.12
#   7         name-7       vm-7     BUILD/kmod-7/...         vm_kmod-7
# The fixture's test builds the module for that kernel (and, for 6.12 and
# 7, fetches the kernel first if it is not cached: a test on a fetched
# kernel requires it whether or not it loads the module). Labels are
# regular expressions to ctest: `ctest -L '^vm$'` runs the default kernel's,
# `ctest -L vm` every kernel's, `ctest -L vm-7` the 7.x ones.
#
# The command runs as root inside the VM, in WORKING_DIRECTORY (default:
# the current binary dir), with the host's environment. Generator
# expressions work. The command's exit status is the test's, 77 meaning
# skipped (SKIP_RETURN_CODE: a test that needs what the kernel lacks says
# why and exits 77); the test also fails when the module does not unload or
# the kernel logs a BUG/WARNING/Oops/leak.
#   MODULE ON    insmod the module built for that kernel first (/dev/regcache
#                is 0666); the test is skipped when there is none.
#   MODULE_ARGS  its parameters.
#   NO_RXE       no veth/rxe0 (faster, for tests that need only the module).
#   TIMEOUT      for the VM (default 600); ctest's is 300 s more (two boots
#                the rig's watchdog may retry, and a margin).
#   RW           host folders the guest may write (the results folder, always
#                writable, is BUILD/vm-results/<test name>, also in
#                $REGCACHE_VM_OUT).
# Every VM test has RESOURCE_LOCK vm: two VMs never run at once on the
# 2-core machine.

# The fixture that builds the module for `kernel` (and fetches the kernel),
# added once, by the first test that needs it.
function(_regcache_vm_fixture kernel target fixture label)
  get_property(done GLOBAL PROPERTY _regcache_vm_fixture_${fixture})
  if(done)
    return()
  endif()
  set_property(GLOBAL PROPERTY _regcache_vm_fixture_${fixture} TRUE)
  if(kernel STREQUAL "default")
    set(name vm_kmod_build)
    set(timeout 300)
  else()
    set(name vm_kmod_build-${kernel})
    # A cold cache downloads the kernel (and for 7.x debootstraps a root).
    set(timeout 1800)
  endif()
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ${target})
  set_tests_properties(${name} PROPERTIES LABELS ${label}
                       FIXTURES_SETUP ${fixture} TIMEOUT ${timeout})
endfunction()

function(regcache_add_vm_test)
  cmake_parse_arguments(PARSE_ARGV 0 VT "NO_RXE"
    "NAME;MODULE;MODULE_ARGS;TIMEOUT;WORKING_DIRECTORY" "COMMAND;LABELS;RW;KERNELS")
  if(NOT VT_NAME OR NOT VT_COMMAND)
    message(FATAL_ERROR "regcache_add_vm_test: NAME and COMMAND are required")
  endif()
  if(VT_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "regcache_add_vm_test(${VT_NAME}): unknown arguments "
                        "${VT_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT VT_KERNELS)
    set(VT_KERNELS default)
  endif()
  if(NOT VT_TIMEOUT)
    set(VT_TIMEOUT 600)
  endif()
  if(NOT VT_WORKING_DIRECTORY)
    set(VT_WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  # run-in-vm.sh's own limit, plus two stalled boots it may retry (90 s each
  # by default), plus a margin.
  math(EXPR ctest_timeout "${VT_TIMEOUT} + 2 * 90 + 120")

  foreach(kernel IN LISTS VT_KERNELS)
    if(NOT kernel IN_LIST REGCACHE_VM_KERNELS)
      message(FATAL_ERROR "regcache_add_vm_test(${VT_NAME}): unknown kernel "
                          "'${kernel}' (one of ${REGCACHE_VM_KERNELS})")
    endif()
    if(kernel STREQUAL "default")
      set(name ${VT_NAME})
      set(label vm)
      set(fixture vm_kmod)
      set(kernel_args "")
    else()
      set(name ${VT_NAME}-${kernel})
      set(label vm-${kernel})
      set(fixture vm_kmod-${kernel})
      set(kernel_args --kernel ${kernel})
    endif()
    set(labels ${label} ${VT_LABELS})
    regcache_kmod_for(${kernel} target ko)

    if(NOT target AND (VT_MODULE OR NOT kernel STREQUAL "default"))
      # Nothing to load: say so and skip, rather than fail or pass.
      add_test(NAME ${name}
               COMMAND sh -c "echo 'SKIP: ${name} needs the regcache module and \
there is no src/kmod_notifier/Makefile (or no kernel for the VM)'; exit 77")
      set_tests_properties(${name} PROPERTIES LABELS "${labels}"
                           SKIP_RETURN_CODE 77)
      continue()
    endif()

    # --ro: the source and build folders stay visible even when they are
    # under /tmp (a CI clone often is; the guest mounts a fresh tmpfs there).
    # Source first: the build folder is often inside it.
    set(args ${kernel_args} --timeout ${VT_TIMEOUT}
             --out ${CMAKE_BINARY_DIR}/vm-results/${name}
             --ro ${CMAKE_SOURCE_DIR} --ro ${CMAKE_BINARY_DIR})
    if(VT_MODULE)
      list(APPEND args --module ${ko})
      if(VT_MODULE_ARGS)
        list(APPEND args --module-args "${VT_MODULE_ARGS}")
      endif()
    endif()
    if(VT_NO_RXE)
      list(APPEND args --no-rxe)
    endif()
    foreach(dir IN LISTS VT_RW)
      list(APPEND args --rw ${dir})
    endforeach()
    add_test(NAME ${name}
             COMMAND ${REGCACHE_VM_RUNNER} ${args} -- ${VT_COMMAND}
             WORKING_DIRECTORY ${VT_WORKING_DIRECTORY})
    set_tests_properties(${name} PROPERTIES LABELS "${labels}"
                         TIMEOUT ${ctest_timeout} RESOURCE_LOCK vm
                         SKIP_RETURN_CODE 77)
    if(target AND (VT_MODULE OR NOT kernel STREQUAL "default"))
      _regcache_vm_fixture(${kernel} ${target} ${fixture} ${label})
      set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED ${fixture})
    endif()
  endforeach()
endfunction()
