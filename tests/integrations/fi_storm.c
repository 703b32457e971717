/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fi_storm: libfabric's MR cache under memory churn, through whatever
 * monitor libfabric uses (with FI_PROVIDER_PATH naming libregcache-fi.so:
 * the regcache module). Modes:
 *
 *   storm SECONDS  2 threads malloc/free (sizes across glibc's mmap
 *                  threshold), madvise(MADV_DONTNEED) and munmap in a loop,
 *                  while 2 threads each replace the pages of a 1 MiB buffer
 *                  at a fixed address with a raw mmap(MAP_FIXED) system
 *                  call (the kernel unmaps the old pages; no hook sees it,
 *                  and no other thread can take the address in between)
 *                  and fi_mr_reg/fi_close it twice per round. A
 *                  watchdog fails the run if it does not finish in time
 *                  (a deadlock). Prints "remaps=N regs=M": each remap must
 *                  cost libfabric one ibv_reg_mr (the second fi_mr_reg of a
 *                  round may hit), which the caller checks by counting
 *                  ibv_reg_mr with libregcache-preload.so in counting mode.
 *   import         calls fi_import() with a monitor of its own before
 *                  libfabric initialises; prints the result and goes on
 *                  registering.
 *   import-late    the same after fi_getinfo(), as Open MPI does.
 *   fork           registers, forks; the child allocates, frees and exits;
 *                  the parent goes on registering. Both must exit 0.
 *
 * Exit 0 when the mode's work completed; 1 on a failed libfabric call, 2 on
 * a hang (watchdog), 3 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_ext.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF (1u << 20)

static struct fid_fabric *fabric;
static struct fid_domain *domain;
static atomic_int stop;
static atomic_ulong remaps, regs, reg_errors, churn_ops;

static void check(int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "fi_storm: %s: %s\n", what, fi_strerror(-rc));
    exit(1);
  }
}

static void open_domain(void) {
  struct fi_info *hints = fi_allocinfo(), *info = NULL;
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_MSG;
  hints->mode = ~0ULL;
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup("verbs");
  check(fi_getinfo(FI_VERSION(1, 13), NULL, NULL, 0, hints, &info),
        "fi_getinfo(verbs)");
  check(fi_fabric(info->fabric_attr, &fabric, NULL), "fi_fabric");
  check(fi_domain(fabric, info, &domain, NULL), "fi_domain");
  fi_freeinfo(info);
  fi_freeinfo(hints);
}

static void reg_once(void *buf, size_t len) {
  struct fid_mr *mr;
  int rc = fi_mr_reg(
      domain, buf, len,
      FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE,
      0, 0, 0, &mr, NULL);
  if (rc != 0) {
    atomic_fetch_add(&reg_errors, 1);
    return;
  }
  atomic_fetch_add(&regs, 1);
  fi_close(&mr->fid);
}

static void *raw_map(void *at) {
  long p = syscall(SYS_mmap, at, BUF, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);
  if (p == -1) {
    perror("fi_storm: mmap");
    exit(1);
  }
  return (void *)p;
}

static void *registerer(void *arg) {
  (void)arg;
  char *buf = raw_map(NULL);
  while (!atomic_load(&stop)) {
    /* New pages under the same address, old ones unmapped, then touch. */
    raw_map(buf);
    memset(buf, 1, BUF);
    atomic_fetch_add(&remaps, 1);
    reg_once(buf, BUF);
    reg_once(buf, BUF); /* may hit */
  }
  syscall(SYS_munmap, buf, BUF);
  return NULL;
}

static void *churner(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  while (!atomic_load(&stop)) {
    size_t len = 4096u << (rand_r(&seed) % 10); /* 4 KiB .. 2 MiB */
    char *p = malloc(len);
    if (p != NULL) {
      memset(p, 2, len);
      free(p);
    }
    char *m = mmap(NULL, 256 << 10, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
      memset(m, 3, 256 << 10);
      madvise(m, 128 << 10, MADV_DONTNEED);
      munmap(m, 256 << 10);
    }
    atomic_fetch_add(&churn_ops, 1);
  }
  return NULL;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "fi_storm: HANG: the run did not finish in time\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(2);
}

static int run_storm(int seconds) {
  pthread_t t[4];
  for (int i = 0; i < 2; ++i) pthread_create(&t[i], NULL, registerer, NULL);
  for (int i = 2; i < 4; ++i)
    pthread_create(&t[i], NULL, churner, (void *)(uintptr_t)(i + 1));
  signal(SIGALRM, on_alarm);
  alarm((unsigned)seconds + 60);
  sleep((unsigned)seconds);
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  alarm(0);
  printf("fi_storm: storm %d s: remaps=%lu regs=%lu reg_errors=%lu churn=%lu\n",
         seconds, atomic_load(&remaps), atomic_load(&regs),
         atomic_load(&reg_errors), atomic_load(&churn_ops));
  return atomic_load(&reg_errors) == 0 ? 0 : 1;
}

/* A monitor that watches nothing: what a program importing its own
 * hook-based monitor looks like to libfabric. */
static int own_start(struct fid_mem_monitor *m) {
  (void)m;
  return 0;
}
static void own_stop(struct fid_mem_monitor *m) { (void)m; }
static int own_subscribe(struct fid_mem_monitor *m, const void *a, size_t l) {
  (void)m;
  (void)a;
  (void)l;
  return 0;
}
static void own_unsubscribe(struct fid_mem_monitor *m, const void *a,
                            size_t l) {
  (void)m;
  (void)a;
  (void)l;
}
static bool own_valid(struct fid_mem_monitor *m, const void *a, size_t l) {
  (void)m;
  (void)a;
  (void)l;
  return true;
}

/* `late`: after libfabric initialised (and the plug-in imported its
 * monitor), as Open MPI does; otherwise before anything else. */
static int run_import(int late) {
  static struct fi_ops_mem_monitor ops = {.size = sizeof(ops),
                                          .start = own_start,
                                          .stop = own_stop,
                                          .subscribe = own_subscribe,
                                          .unsubscribe = own_unsubscribe,
                                          .valid = own_valid};
  static struct fid_mem_monitor mon;
  mon.fid.fclass = FI_CLASS_MEM_MONITOR;
  mon.export_ops = &ops;
  if (late) open_domain();
  int rc = fi_import(FI_VERSION(1, 13), "mr_cache", NULL, 0, 0, &mon.fid, NULL);
  printf("fi_storm: the program's own fi_import (%s): %d (%s)\n",
         late ? "late" : "early", rc, rc == 0 ? "imported" : fi_strerror(-rc));
  if (!late) open_domain();
  char *buf = raw_map(NULL);
  for (int i = 0; i < 20; ++i) reg_once(buf, BUF);
  printf("fi_storm: import: regs=%lu reg_errors=%lu\n", atomic_load(&regs),
         atomic_load(&reg_errors));
  return atomic_load(&reg_errors) == 0 ? 0 : 1;
}

static int run_fork(void) {
  open_domain();
  char *buf = raw_map(NULL);
  memset(buf, 1, BUF);
  reg_once(buf, BUF);
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    for (int i = 0; i < 100; ++i) free(malloc(1 << 20));
    _exit(0);
  }
  for (int i = 0; i < 10; ++i) {
    raw_map(buf);
    memset(buf, 1, BUF);
    atomic_fetch_add(&remaps, 1);
    reg_once(buf, BUF);
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf(
      "fi_storm: fork: child exit %d, parent remaps=%lu regs=%lu "
      "reg_errors=%lu\n",
      WIFEXITED(status) ? WEXITSTATUS(status) : -1, atomic_load(&remaps),
      atomic_load(&regs), atomic_load(&reg_errors));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                 atomic_load(&reg_errors) == 0
             ? 0
             : 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "import") == 0) return run_import(0);
  if (argc >= 2 && strcmp(argv[1], "import-late") == 0) return run_import(1);
  if (argc >= 2 && strcmp(argv[1], "fork") == 0) return run_fork();
  if (argc >= 3 && strcmp(argv[1], "storm") == 0) {
    int seconds = atoi(argv[2]);
    if (seconds < 1 || seconds > 3600) {
      fprintf(stderr, "fi_storm: SECONDS must be 1..3600\n");
      return 3;
    }
    open_domain();
    int rc = run_storm(seconds);
    fi_close(&domain->fid);
    fi_close(&fabric->fid);
    return rc;
  }
  fprintf(stderr,
          "usage: fi_storm storm SECONDS | import | import-late | fork\n");
  return 3;
}
