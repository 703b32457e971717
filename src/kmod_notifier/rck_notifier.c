// SPDX-License-Identifier: GPL-2.0
/*
 * The invalidation side of the regcache module: the interval tree of
 * monitored ranges, the mmu notifier that marks them stale, and the event
 * ring in the shared area.
 *
 * invalidate_range_start() runs synchronously inside munmap(), madvise(),
 * mremap() and friends, possibly with mmu_notifier_range_blockable() false.
 * It takes only rck_ctx.lock (a spinlock), never allocates, never sleeps and
 * never takes mmap_lock, so by the time the system call returns every
 * overlapping range's generation word has been bumped. A stale range leaves
 * the tree (its slot stays owned until UNMONITOR), so a range produces one
 * event however many times its memory is invalidated afterwards.
 *
 * invalidate_range_end() repeats the lookup: a range MONITORed while an
 * invalidation was between start and end may already be registered against
 * pages that the invalidation is about to drop (docs/kmod.md, "The
 * insertion race"), so it is made stale too.
 *
 * Waking the reader. The generation words are the truth and are bumped
 * right here; the event ring and poll() only let userspace's event thread
 * drop stale registrations early (the cache also drains the ring itself
 * before every miss). Waking a thread blocked in poll() from inside
 * munmap() makes that munmap() pay for a context switch, many times the
 * notifier's own work (measurements: results/README.md), so the wake-up is
 * deferred: the first invalidation that writes events arms wake_timer
 * (wake_delay jiffies, module parameter wake_delay_us) and later ones only
 * find it armed. The timer's callback wakes the wait queue in softirq
 * context. The notifier wakes at once instead when wake_delay is 0, or when
 * more than half of the ring is unacknowledged, so a burst never overflows
 * the ring for want of a reader. A missed or late wake-up can cost
 * promptness (how soon pinned memory is deregistered), never correctness.
 */
#include <linux/bitops.h>
#include <linux/interval_tree_generic.h>
#include <linux/jiffies.h>
#include <linux/poll.h>
#include <linux/sched.h>

#include "rck_compat.h"
#include "rck_internal.h"

#define rck_range_start(r) ((r)->start)
#define rck_range_last(r) ((r)->last)

INTERVAL_TREE_DEFINE(struct rck_range, rb, unsigned long, subtree_last,
		     rck_range_start, rck_range_last, static inline, rck_itree)

/* Map a notifier event to the reason it invalidates for, or NONE. */
static u16 rck_event_reason(enum mmu_notifier_event event)
{
	switch (event) {
	case MMU_NOTIFY_UNMAP:
		return REGCACHE_KMOD_REASON_UNMAP;
	case MMU_NOTIFY_CLEAR:
		return REGCACHE_KMOD_REASON_CLEAR;
	case MMU_NOTIFY_RELEASE:
		return REGCACHE_KMOD_REASON_RELEASE;
	case MMU_NOTIFY_MIGRATE:
		return REGCACHE_KMOD_REASON_MIGRATE;
	case MMU_NOTIFY_EXCLUSIVE:
		return REGCACHE_KMOD_REASON_EXCLUSIVE;
	case MMU_NOTIFY_PROTECTION_VMA:	/* mprotect(), NUMA hinting */
	case MMU_NOTIFY_PROTECTION_PAGE: /* fork's COW write-protect, mkclean */
	case MMU_NOTIFY_SOFT_DIRTY:	/* clear_refs */
		return REGCACHE_KMOD_REASON_NONE;
	}
	/* An event added by a later kernel: be safe, treat it as CLEAR. */
	return REGCACHE_KMOD_REASON_CLEAR;
}

static void rck_bump_gen_locked(struct rck_ctx *ctx, struct rck_range *range)
{
	lockdep_assert_held(&ctx->lock);
	WRITE_ONCE(*range->gen, *range->gen + 1);
}

/*
 * Append one event. The ring is overwritten freely: a reader that fell more
 * than ring_entries behind sees it from ring_head and rescans generations.
 * The barrier orders the previous event's head store before this entry's
 * stores, so a reader that saw any part of this entry also sees a head that
 * tells it the entry it wanted may be torn.
 */
static void rck_emit_locked(struct rck_ctx *ctx, struct rck_range *range,
			    u16 reason, u16 flags)
{
	u64 head = ctx->head;
	struct regcache_kmod_event *ev =
		&ctx->ring[head & (ctx->ring_entries - 1)];

	lockdep_assert_held(&ctx->lock);
	if (head - ctx->acked >= ctx->ring_entries)
		ctx->stats.ring_overflows++;
	/* The previous head store before this entry's stores (see above). */
	smp_wmb();
	WRITE_ONCE(ev->seq, head);
	WRITE_ONCE(ev->cookie, range->cookie);
	WRITE_ONCE(ev->generation, *range->gen);
	WRITE_ONCE(ev->slot, range->slot);
	WRITE_ONCE(ev->reason, reason);
	WRITE_ONCE(ev->flags, flags);
	ctx->head = head + 1;
	ctx->stats.events++;
	/* The entry before its head: pairs with the reader's load-acquire. */
	smp_store_release(&ctx->shared->ring_head, ctx->head);
}

static void rck_make_stale_locked(struct rck_ctx *ctx, struct rck_range *range,
				  u16 reason, u16 flags)
{
	lockdep_assert_held(&ctx->lock);
	rck_itree_remove(range, &ctx->tree);
	range->in_tree = false;
	rck_bump_gen_locked(ctx, range);
	rck_emit_locked(ctx, range, reason, flags);
	ctx->stats.invalidated[reason]++;
	if (flags & REGCACHE_KMOD_EVENT_F_LATE)
		ctx->stats.late++;
}

/* Publish that generations changed; after every bump of this round. */
static void rck_bump_seq_locked(struct rck_ctx *ctx)
{
	lockdep_assert_held(&ctx->lock);
	ctx->inval_seq++;
	ctx->stats.inval_seq = ctx->inval_seq;
	/* The round's generation bumps before the sequence that announces them. */
	smp_store_release(&ctx->shared->inval_seq, ctx->inval_seq);
}

/* Make every range overlapping [start, last] stale. Returns how many. */
static unsigned long rck_invalidate_locked(struct rck_ctx *ctx,
					   unsigned long start,
					   unsigned long last, u16 reason,
					   u16 flags)
{
	struct rck_range *range;
	unsigned long hits = 0;

	lockdep_assert_held(&ctx->lock);
	/* Removal rebalances the tree, so look up afresh each time. */
	while ((range = rck_itree_iter_first(&ctx->tree, start, last))) {
		rck_make_stale_locked(ctx, range, reason, flags);
		hits++;
	}
	if (hits)
		rck_bump_seq_locked(ctx);
	return hits;
}

/**
 * rck_wake_timer_fn() - the deferred wake-up of poll() waiters
 * @timer: rck_ctx.wake_timer
 *
 * Runs in softirq context, so it must not take rck_ctx.lock (taken with
 * softirqs enabled). Clearing RCK_WAKE_ARMED before waking means a notifier
 * that saw the bit set wrote its events before this wake-up, and one that
 * finds it clear arms the timer again: every event is followed by a wake-up.
 */
void rck_wake_timer_fn(struct timer_list *timer)
{
	struct rck_ctx *ctx = timer_container_of(ctx, timer, wake_timer);

	clear_bit(RCK_WAKE_ARMED, &ctx->wake_flags);
	/* The bit clear before the wake-up's reads (see above). */
	smp_mb__after_atomic();
	wake_up_interruptible_poll(&ctx->wq, EPOLLIN | EPOLLRDNORM);
}

/*
 * Called with the lock held after a round that wrote events: true if
 * poll() waiters are to be woken before the notifier returns.
 */
static bool rck_wake_now_locked(struct rck_ctx *ctx)
{
	lockdep_assert_held(&ctx->lock);
	return !ctx->wake_delay ||
	       ctx->head - ctx->acked > ctx->ring_entries / 2;
}

/*
 * Wake poll() waiters now, or make sure wake_timer will. Called after the
 * lock is dropped; the events are already published. test_and_set_bit()
 * is a full barrier: the events are visible before the timer can clear the
 * bit it found set.
 */
static void rck_wake(struct rck_ctx *ctx, bool now)
{
	if (now)
		wake_up_interruptible_poll(&ctx->wq, EPOLLIN | EPOLLRDNORM);
	else if (!test_and_set_bit(RCK_WAKE_ARMED, &ctx->wake_flags))
		mod_timer(&ctx->wake_timer, jiffies + ctx->wake_delay);
}

static int rck_invalidate_range_start(struct mmu_notifier *mn,
				      const struct mmu_notifier_range *range)
{
	struct rck_ctx *ctx = container_of(mn, struct rck_ctx, mn);
	u16 reason = rck_event_reason(range->event);
	unsigned long hits = 0;
	bool now = false;

	spin_lock(&ctx->lock);
	ctx->stats.notifier_calls++;
	if (reason == REGCACHE_KMOD_REASON_NONE)
		ctx->stats.ignored_calls++;
	else if (range->end > range->start)
		hits = rck_invalidate_locked(ctx, range->start, range->end - 1,
					     reason, 0);
	if (hits)
		now = rck_wake_now_locked(ctx);
	spin_unlock(&ctx->lock);

	if (hits)
		rck_wake(ctx, now);
	/*
	 * Never fails, blockable or not: nothing here sleeps (mod_timer() and
	 * wake_up() are fine in atomic context).
	 */
	return 0;
}

static void rck_invalidate_range_end(struct mmu_notifier *mn,
				     const struct mmu_notifier_range *range)
{
	struct rck_ctx *ctx = container_of(mn, struct rck_ctx, mn);
	u16 reason = rck_event_reason(range->event);
	unsigned long hits;
	bool now = false;

	if (reason == REGCACHE_KMOD_REASON_NONE || range->end <= range->start)
		return;
	spin_lock(&ctx->lock);
	hits = rck_invalidate_locked(ctx, range->start, range->end - 1, reason,
				     REGCACHE_KMOD_EVENT_F_LATE);
	if (hits)
		now = rck_wake_now_locked(ctx);
	spin_unlock(&ctx->lock);
	if (hits)
		rck_wake(ctx, now);
}

/*
 * The mm is going away (exit_mmap()), or close() is unregistering us.
 * Everything still monitored becomes stale; MONITOR fails from now on.
 * The wake-up is immediate (with EPOLLHUP: the event thread can exit). A
 * wake_timer still armed by an earlier invalidation is left to fire: the
 * context lives until the file's release, which shuts the timer down only
 * after mmu_notifier_unregister() has waited for every callback, so no
 * notifier can arm it again afterwards.
 */
static void rck_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct rck_ctx *ctx = container_of(mn, struct rck_ctx, mn);
	struct rb_node *node;
	unsigned long hits = 0;

	spin_lock(&ctx->lock);
	while ((node = rb_first_cached(&ctx->tree))) {
		rck_make_stale_locked(ctx, rb_entry(node, struct rck_range, rb),
				      REGCACHE_KMOD_REASON_RELEASE, 0);
		hits++;
	}
	ctx->released = true;
	WRITE_ONCE(ctx->shared->flags,
		   ctx->shared->flags | REGCACHE_KMOD_SHARED_F_RELEASED);
	if (hits)
		rck_bump_seq_locked(ctx);
	spin_unlock(&ctx->lock);

	wake_up_interruptible_poll(&ctx->wq, EPOLLIN | EPOLLHUP);
}

const struct mmu_notifier_ops rck_mn_ops = {
	.release = rck_release,
	.invalidate_range_start = rck_invalidate_range_start,
	.invalidate_range_end = rck_invalidate_range_end,
};

/**
 * rck_range_insert_locked() - start monitoring a range
 * @ctx: the context, with @ctx->lock held
 * @range: a range with start, last, cookie, slot and gen filled in
 *
 * Records the slot's current generation as the range's insert_gen and puts
 * the range in the tree, where the notifier finds it from now on.
 */
void rck_range_insert_locked(struct rck_ctx *ctx, struct rck_range *range)
{
	lockdep_assert_held(&ctx->lock);
	range->insert_gen = *range->gen;
	rck_itree_insert(range, &ctx->tree);
	range->in_tree = true;
	ctx->stats.monitors++;
	ctx->stats.ranges_now++;
}

/**
 * rck_range_forget_locked() - stop monitoring a range (UNMONITOR)
 * @ctx: the context, with @ctx->lock held
 * @range: a range inserted by rck_range_insert_locked()
 *
 * Takes the range out of the tree if it is still there and bumps the slot's
 * generation, so a token for this use of the slot never matches again even
 * after the slot is reused. No event is written: userspace asked for this.
 */
void rck_range_forget_locked(struct rck_ctx *ctx, struct rck_range *range)
{
	lockdep_assert_held(&ctx->lock);
	if (range->in_tree) {
		rck_itree_remove(range, &ctx->tree);
		range->in_tree = false;
	}
	rck_bump_gen_locked(ctx, range);
	ctx->stats.unmonitors++;
	ctx->stats.ranges_now--;
}
