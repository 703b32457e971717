/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR BSD-2-Clause */
/*
 * regcache kernel module ABI: /dev/regcache.
 *
 * Shared by the module (src/kmod_notifier/) and userspace (C and C++). It
 * defines the ioctls on /dev/regcache, their argument structures and the
 * layout of the read-only area a process maps from the device fd, and the
 * offset at which the fd maps physically contiguous memory instead. Every
 * field says whether the caller fills it (in) or the kernel does (out).
 * docs/kmod.md explains the protocol; REGCACHE_KMOD_ABI_VERSION changes with
 * any incompatible change to anything in this file. Additions do not change
 * it: a module without REGCACHE_IOC_CONTIG_INFO answers it with -ENOTTY.
 *
 * A file opened on /dev/regcache is a context bound to the opener's mm. Only
 * threads of that mm may ioctl() or mmap() it; anyone else (a fork child that
 * inherited the fd, a process the fd was passed to) gets -EPERM and should
 * open its own context.
 *
 * Memory ordering: the kernel publishes with release stores; userspace reads
 * inval_seq, ring_head and generation words with acquire loads. Generations
 * are authoritative: the ring is a hint that may overflow.
 */
#ifndef REGCACHE_KMOD_UAPI_H_
#define REGCACHE_KMOD_UAPI_H_

#include <linux/ioctl.h>
#include <linux/types.h>

#define REGCACHE_KMOD_ABI_VERSION 1
#define REGCACHE_KMOD_DEVICE_PATH "/dev/regcache"
#define REGCACHE_KMOD_IOC_MAGIC 0xDA

/* Most ranges one REGCACHE_IOC_MONITOR_BATCH call takes. */
#define REGCACHE_KMOD_BATCH_MAX 1024

/* Why a range went stale (regcache_kmod_event.reason, stats index). */
#define REGCACHE_KMOD_REASON_NONE 0
#define REGCACHE_KMOD_REASON_UNMAP 1	 /* MMU_NOTIFY_UNMAP: munmap, mremap move */
#define REGCACHE_KMOD_REASON_CLEAR 2	 /* MMU_NOTIFY_CLEAR: madvise, COW, zap */
#define REGCACHE_KMOD_REASON_RELEASE 3	 /* the mm exited (notifier release) */
#define REGCACHE_KMOD_REASON_MIGRATE 4	 /* MMU_NOTIFY_MIGRATE (migrate_vma) */
#define REGCACHE_KMOD_REASON_EXCLUSIVE 5 /* MMU_NOTIFY_EXCLUSIVE */
#define REGCACHE_KMOD_NR_REASONS 8	 /* array size; 6 and 7 unused */

/*
 * The start of the shared mapping (offset 0). mmap() the fd read-only and
 * MAP_SHARED; map one page first to learn map_size, then map map_size bytes
 * (or map map_size bytes straight away if the values are known). Three
 * cache lines: geometry (written once at open), the invalidation sequence,
 * and the ring head, so the hot words do not share a line.
 */
struct regcache_kmod_shared {
	__u32 abi_version;	/* (out) REGCACHE_KMOD_ABI_VERSION */
	__u32 header_size;	/* (out) sizeof(struct regcache_kmod_shared) */
	__u32 max_ranges;	/* (out) generation slots; slot < max_ranges */
	__u32 ring_entries;	/* (out) events in the ring; a power of two */
	__u64 ring_offset;	/* (out) byte offset of the event ring */
	__u64 gen_offset;	/* (out) byte offset of the __u64 generations */
	__u64 map_size;		/* (out) bytes that cover header, ring, gens */
	__u64 reserved0[3];

	/*
	 * (out) Bumped once by every invalidation that made at least one range
	 * stale, after those ranges' generations were bumped. Unchanged since
	 * the last look means no generation changed.
	 */
	__u64 inval_seq;
	__u64 reserved1[7];

	/*
	 * (out) Events ever written. Event i sits in ring[i % ring_entries];
	 * a reader keeps its own tail (docs/kmod.md, "Reading the ring").
	 */
	__u64 ring_head;
	__u64 flags;		/* (out) REGCACHE_KMOD_SHARED_F_* */
	__u64 reserved2[6];
};

/* The mm exited: every range was made stale with REASON_RELEASE. */
#define REGCACHE_KMOD_SHARED_F_RELEASED (1ULL << 0)

/* One ring entry: one range made stale. */
struct regcache_kmod_event {
	__u64 seq;		/* (out) this event's number (ring_head when written) */
	__u64 cookie;		/* (out) the cookie MONITOR was given */
	__u64 generation;	/* (out) the slot's generation after the bump */
	__u32 slot;		/* (out) the range's slot */
	__u16 reason;		/* (out) REGCACHE_KMOD_REASON_* */
	__u16 flags;		/* (out) REGCACHE_KMOD_EVENT_F_* */
};

/*
 * Found by invalidate_range_end(): the range was monitored while the
 * invalidation was already running (docs/kmod.md, "The insertion race").
 */
#define REGCACHE_KMOD_EVENT_F_LATE (1U << 0)

/*
 * REGCACHE_IOC_MONITOR and the elements of REGCACHE_IOC_MONITOR_BATCH.
 * [start, start + length) must be page aligned, non-empty and below the
 * task's TASK_SIZE; the range need not be mapped.
 */
struct regcache_kmod_range {
	__u64 start;		/* (in) first byte, page aligned */
	__u64 length;		/* (in) bytes, a non-zero multiple of the page size */
	__u64 cookie;		/* (in) opaque; echoed in this range's events */
	__u64 generation;	/* (out) the slot's generation when inserted */
	__u32 slot;		/* (out) index into the generation array */
	__u32 flags;		/* (in) must be 0 */
};

/* All or nothing: on error no range of the batch is monitored. */
struct regcache_kmod_monitor_batch {
	__u64 ranges;		/* (in) user pointer to count regcache_kmod_range */
	__u32 count;		/* (in) 1..REGCACHE_KMOD_BATCH_MAX */
	__u32 flags;		/* (in) must be 0 */
};

/* Stop monitoring a slot; its generation is bumped (never reset). */
struct regcache_kmod_unmonitor {
	__u64 generation;	/* (in) the generation MONITOR returned */
	__u32 slot;		/* (in) the slot MONITOR returned */
	__u32 flags;		/* (in) must be 0 */
};

/* Tell the kernel how far the ring was read, for poll(). */
struct regcache_kmod_ack {
	__u64 tail;		/* (in) events consumed; clamped to ring_head */
	__u64 head;		/* (out) ring_head at the time of the call */
};

/* Counters of one context since open. */
struct regcache_kmod_stats {
	__u64 ranges_now;	/* (out) slots in use */
	__u64 max_ranges;	/* (out) slots available */
	__u64 monitors;		/* (out) ranges monitored */
	__u64 unmonitors;	/* (out) ranges unmonitored */
	__u64 notifier_calls;	/* (out) invalidate_range_start calls */
	__u64 ignored_calls;	/* (out) ... whose event does not invalidate */
	__u64 invalidated[REGCACHE_KMOD_NR_REASONS]; /* (out) stale, by reason */
	__u64 late;		/* (out) of those, found at range_end */
	__u64 events;		/* (out) ring events written */
	__u64 ring_overflows;	/* (out) events written over unacknowledged ones */
	__u64 inval_seq;	/* (out) the shared inval_seq */
	__u64 reserved[8];
};

/*
 * Physically contiguous memory (docs/kmod.md, "Contiguous memory"):
 *
 *   mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
 *        REGCACHE_MMAP_CONTIG_OFFSET)
 *
 * on an fd opened O_RDWR maps len bytes (rounded up to pages, as every mmap
 * does) of zeroed, physically contiguous pages, all present when mmap()
 * returns. The mapping is never writable-private (MAP_PRIVATE: EINVAL),
 * never executable (PROT_EXEC: EINVAL), never grows (mremap: EFAULT), never
 * splits (partial munmap, mprotect or mremap of part of it: EINVAL), is not
 * inherited by a fork child, and counts in the process's locked_vm against
 * RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK. Errors: EINVAL for a bad
 * offset or flags; EPERM for a process with RLIMIT_MEMLOCK 0 and without
 * CAP_IPC_LOCK, EAGAIN over RLIMIT_MEMLOCK; ENOMEM when the module's limits
 * (contig_max_per_process_mb, contig_max_total_mb) would be exceeded or no
 * contiguous memory of that size could be found. The offset lies far above
 * any offset of the shared area (at most a few hundred MiB).
 */
#define REGCACHE_MMAP_CONTIG_OFFSET 0x10000000000ULL /* 1 TiB */

/* Contiguous memory: what is held and what may be. All (out). */
struct regcache_kmod_contig_info {
	__u64 fd_bytes;		/* (out) mapped from this fd and not yet freed */
	__u64 fd_mappings;	/* (out) ... as that many mmap() calls */
	__u64 process_bytes;	/* (out) from every fd of this process */
	__u64 process_mappings;	/* (out) */
	__u64 total_bytes;	/* (out) by every process */
	__u64 total_mappings;	/* (out) */
	__u64 max_process_bytes; /* (out) contig_max_per_process_mb, in bytes */
	__u64 max_total_bytes;	/* (out) contig_max_total_mb, in bytes */
	__u64 max_buddy_bytes;	/* (out) largest block of the buddy allocator */
	__u64 max_bytes;	/* (out) largest size this kernel can try */
	__u32 page_size;	/* (out) the kernel's page size */
	__u32 flags;		/* (out) REGCACHE_KMOD_CONTIG_F_* */
	__u64 reserved[5];
};

/*
 * Sizes above max_buddy_bytes can be tried: the kernel's contiguous range
 * allocator is available to the module (max_bytes is then the smaller of
 * the limits, else max_buddy_bytes).
 */
#define REGCACHE_KMOD_CONTIG_F_LARGE 0x1U

#define REGCACHE_IOC_MONITOR \
	_IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x01, struct regcache_kmod_range)
#define REGCACHE_IOC_MONITOR_BATCH \
	_IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x02, struct regcache_kmod_monitor_batch)
#define REGCACHE_IOC_UNMONITOR \
	_IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x03, struct regcache_kmod_unmonitor)
#define REGCACHE_IOC_STATS \
	_IOR(REGCACHE_KMOD_IOC_MAGIC, 0x04, struct regcache_kmod_stats)
#define REGCACHE_IOC_ACK_EVENTS \
	_IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x05, struct regcache_kmod_ack)
#define REGCACHE_IOC_CONTIG_INFO \
	_IOR(REGCACHE_KMOD_IOC_MAGIC, 0x06, struct regcache_kmod_contig_info)

#endif /* REGCACHE_KMOD_UAPI_H_ */
