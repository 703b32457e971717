/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal declarations of the regcache module, shared by regcache_kmod.c
 * (the device: open, ioctl, mmap, poll), rck_notifier.c (the interval
 * tree of monitored ranges, the mmu notifier and the event ring) and
 * rck_contig.c (physically contiguous memory).
 *
 * Locking, outermost first:
 *   rck_ctx.slot_lock (mutex)  MONITOR/UNMONITOR: slot allocation
 *   rck_ctx.lock (spinlock)    the tree, generations, ring, counters; the
 *                              only lock the notifier callbacks take
 * Nothing allocates, sleeps or touches user memory under rck_ctx.lock.
 * rck_contig.c's rck_contig_lock (spinlock, global) nests in no other lock
 * of the module and is held only to update its counters.
 */
#ifndef RCK_INTERNAL_H
#define RCK_INTERNAL_H

#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/rbtree.h>
#include <linux/spinlock.h>
#include <linux/timer.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <regcache/kmod_uapi.h>

/* Generation words per page of the shared generation array. */
#define RCK_GENS_PER_PAGE (PAGE_SIZE / sizeof(u64))

/* One monitored range: one slot of the generation array. */
struct rck_range {
	struct rb_node rb;		/* in rck_ctx.tree while in_tree */
	unsigned long start;		/* first byte; immutable */
	unsigned long last;		/* last byte (closed); immutable */
	unsigned long subtree_last;	/* interval tree augmentation */
	bool in_tree;			/* false once stale or unmonitored */
	/* protected by rck_ctx.lock: the four fields above */

	u64 cookie;			/* user's cookie; immutable */
	u64 insert_gen;			/* generation at MONITOR; immutable */
	u64 *gen;			/* this slot's generation word; immutable */
	u32 slot;			/* immutable once published */
};

/* One open file of /dev/regcache: a context bound to one mm. */
struct rck_ctx {
	struct mmu_notifier mn;		/* registered on mm from open to close */
	struct mm_struct *mm;		/* mmgrab()ed opener's mm; immutable */

	/* Geometry, fixed at open. */
	u32 max_ranges;			/* generation slots */
	u32 ring_entries;		/* power of two */
	unsigned long fixed_pages;	/* header + ring pages (vmalloc_user) */
	unsigned long gen_npages;	/* pages of the generation array */

	/* Header and ring; vmalloc_user(), freed at close. */
	struct regcache_kmod_shared *shared;
	struct regcache_kmod_event *ring;
	/*
	 * Generation pages, allocated on first use and installed with
	 * cmpxchg() (so MONITOR and the fault handler need no lock); a page
	 * never changes or goes away before close.
	 */
	struct page **gen_pages;

	struct mutex slot_lock;		/* slots, and the ranges' lifetime */
	struct xarray slots;		/* slot -> struct rck_range */

	spinlock_t lock;		/* tree .. stats, every generation word */
	struct rb_root_cached tree;	/* ranges not yet stale */
	u64 head;			/* events written (== shared->ring_head) */
	u64 acked;			/* events acknowledged, for poll() */
	u64 inval_seq;			/* == shared->inval_seq */
	bool released;			/* the mm has exited */
	struct regcache_kmod_stats stats;

	u64 contig_bytes;		/* contiguous memory mapped from this file */
	u64 contig_mappings;
	/* protected by rck_contig_lock (rck_contig.c): contig_bytes, _mappings */

	wait_queue_head_t wq;		/* poll(); woken when head moves */
	/*
	 * The deferred wake-up of wq (rck_notifier.c, "Waking the reader").
	 * wake_delay is in jiffies, 0 to wake at once; fixed at open.
	 * RCK_WAKE_ARMED in wake_flags is set (test_and_set_bit()) by the
	 * notifier that arms wake_timer and cleared by the timer before it
	 * wakes wq; the timer is shut down at close after the notifier is
	 * unregistered, so it never runs on a freed context.
	 */
	unsigned long wake_delay;
	unsigned long wake_flags;
	struct timer_list wake_timer;
};

#define RCK_WAKE_ARMED 0	/* bit in rck_ctx.wake_flags */

/* mmap() offsets from here on map contiguous memory (rck_contig.c). */
#define RCK_CONTIG_PGOFF (REGCACHE_MMAP_CONTIG_OFFSET >> PAGE_SHIFT)

extern const struct mmu_notifier_ops rck_mn_ops;

void rck_range_insert_locked(struct rck_ctx *ctx, struct rck_range *range);
void rck_range_forget_locked(struct rck_ctx *ctx, struct rck_range *range);
void rck_wake_timer_fn(struct timer_list *timer);

int rck_contig_mmap(struct rck_ctx *ctx, struct vm_area_struct *vma);
long rck_ioc_contig_info(struct rck_ctx *ctx, void __user *uarg);
void rck_contig_init(void);

#endif /* RCK_INTERNAL_H */
