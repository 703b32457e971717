/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mpi_reuse: the hazard a registration cache exists for, in an MPI program
 * that knows nothing of caches. Two ranks; rank 0 sends rounds of 1 MiB and
 * 2 MiB messages (large enough for rendezvous, which registers the user's
 * buffers) from buffers it frees and allocates again before every round,
 * and rank 1 receives into buffers it replaces the same way. Every message
 * carries a pattern of its round and is checked in full.
 *
 * Three kinds of buffer, each at its own address:
 *   malloc  malloc()/free() (glibc maps and unmaps these sizes)
 *   mmap    mmap()/munmap() through libc, which memory hooks see
 *   raw     syscall(SYS_munmap) and syscall(SYS_mmap) at the same address
 *           (kept reserved with PROT_NONE between rounds, so nothing else
 *           lands there): no hook in any library sees these, only the
 *           kernel
 * A cache that missed the unmap hands out the registration of the old
 * pages: the receiver reads the sender's old pages (last round's pattern)
 * or writes into its own old pages (the new mapping stays zero).
 *
 * Output (rank 1): one line per kind, "kind=raw messages=N bad=M", and
 * "mpi_reuse: PASS" or "mpi_reuse: FAIL (M bad messages)". Exit 0 only
 * when every message arrived intact. Usage: mpi_reuse [rounds] (default 8).
 */
#define _GNU_SOURCE
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

enum kind { KIND_MALLOC, KIND_MMAP, KIND_RAW, NKINDS };
static const char *const kind_names[NKINDS] = {"malloc", "mmap", "raw"};
static const size_t sizes[] = {1u << 20, 2u << 20};
#define MAX_SIZE (2u << 20)

struct slot {
  enum kind kind;
  void *buf;
  size_t len;
  void *raw_addr; /* the fixed address of the raw kind */
};

static void die(const char *what) {
  perror(what);
  MPI_Abort(MPI_COMM_WORLD, 2);
}

static void *raw_mmap(void *at, size_t len, int prot, int flags) {
  long p = syscall(SYS_mmap, at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags,
                   -1, 0);
  return p == -1 ? MAP_FAILED : (void *)p;
}

/* Maps [at, at + len) read-write over the PROT_NONE reservation there. */
static void *raw_map(void *at, size_t len) {
  void *p = raw_mmap(at, len, PROT_READ | PROT_WRITE, MAP_FIXED);
  if (p != at) die("raw mmap");
  return p;
}

/* Unmaps it, then reserves the address again at once. */
static void raw_unmap(void *at, size_t len) {
  if (syscall(SYS_munmap, at, len) != 0) die("raw munmap");
  if (raw_mmap(at, len, PROT_NONE, MAP_FIXED_NOREPLACE | MAP_NORESERVE) != at)
    die("raw re-reserve (another mapping took the address)");
}

static void slot_alloc(struct slot *s, size_t len) {
  s->len = len;
  switch (s->kind) {
    case KIND_MALLOC:
      s->buf = malloc(len);
      if (s->buf == NULL) die("malloc");
      break;
    case KIND_MMAP:
      s->buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (s->buf == MAP_FAILED) die("mmap");
      break;
    case KIND_RAW:
      s->buf = raw_map(s->raw_addr, len);
      break;
    default:
      break;
  }
}

static void slot_free(struct slot *s) {
  switch (s->kind) {
    case KIND_MALLOC:
      free(s->buf);
      break;
    case KIND_MMAP:
      munmap(s->buf, s->len);
      break;
    case KIND_RAW:
      raw_unmap(s->buf, s->len);
      break;
    default:
      break;
  }
  s->buf = NULL;
}

static uint64_t word(int round, int kind, size_t i) {
  return ((uint64_t)(round + 1) << 48) ^ ((uint64_t)kind << 40) ^ i;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0) fprintf(stderr, "mpi_reuse: run with exactly 2 ranks\n");
    MPI_Finalize();
    return 2;
  }
  int rounds = argc > 1 ? atoi(argv[1]) : 8;
  if (rounds < 2 || rounds > 10000) {
    if (rank == 0) fprintf(stderr, "mpi_reuse: rounds must be 2..10000\n");
    MPI_Finalize();
    return 2;
  }
  struct slot slots[NKINDS];
  for (int k = 0; k < NKINDS; ++k) {
    slots[k].kind = (enum kind)k;
    slots[k].buf = NULL;
    slots[k].raw_addr = NULL;
  }
  /* The raw kind's address: reserved for the whole run. */
  slots[KIND_RAW].raw_addr = raw_mmap(NULL, MAX_SIZE, PROT_NONE, MAP_NORESERVE);
  if (slots[KIND_RAW].raw_addr == MAP_FAILED) die("raw reserve");

  unsigned long messages[NKINDS] = {0}, bad[NKINDS] = {0};
  for (int r = 0; r < rounds; ++r) {
    const size_t len = sizes[r % 2 == 0 ? 0 : 1];
    for (int k = 0; k < NKINDS; ++k) {
      struct slot *s = &slots[k];
      slot_alloc(s, len);
      uint64_t *w = s->buf;
      const size_t n = len / sizeof(uint64_t);
      if (rank == 0) {
        for (size_t i = 0; i < n; ++i) w[i] = word(r, k, i);
        MPI_Send(s->buf, (int)len, MPI_BYTE, 1, k, MPI_COMM_WORLD);
      } else {
        memset(s->buf, 0, len);
        MPI_Recv(s->buf, (int)len, MPI_BYTE, 0, k, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        size_t wrong = 0;
        for (size_t i = 0; i < n; ++i) wrong += w[i] != word(r, k, i);
        ++messages[k];
        if (wrong != 0) {
          ++bad[k];
          fprintf(stderr,
                  "mpi_reuse: round %d kind=%s %zu bytes at %p: %zu of %zu "
                  "words wrong (first word 0x%llx, expected 0x%llx)\n",
                  r, kind_names[k], len, s->buf, wrong, n,
                  (unsigned long long)w[0], (unsigned long long)word(r, k, 0));
        }
      }
      slot_free(s);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  int status = 0;
  if (rank == 1) {
    unsigned long total = 0;
    for (int k = 0; k < NKINDS; ++k) {
      printf("kind=%s messages=%lu bad=%lu\n", kind_names[k], messages[k],
             bad[k]);
      total += bad[k];
    }
    if (total == 0)
      printf("mpi_reuse: PASS\n");
    else
      printf("mpi_reuse: FAIL (%lu bad messages)\n", total);
    fflush(stdout);
    status = total == 0 ? 0 : 1;
  }
  MPI_Bcast(&status, 1, MPI_INT, 1, MPI_COMM_WORLD);
  MPI_Finalize();
  return status;
}
