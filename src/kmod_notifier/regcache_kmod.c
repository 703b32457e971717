// SPDX-License-Identifier: GPL-2.0
/*
 * regcache: synchronous invalidation notices for RDMA registration caches.
 *
 * The misc device /dev/regcache. Each open file is a context bound to the
 * opener's mm (mmgrab(), so it never keeps the process's memory alive) with
 * one mmu notifier. Userspace MONITORs address ranges before registering
 * them and learns that a range went stale from a generation word in a
 * read-only shared area, bumped synchronously by the notifier
 * (rck_notifier.c), plus a best-effort event ring and poll(), whose
 * wake-up the notifier defers by up to wake_delay_us.
 *
 * At REGCACHE_MMAP_CONTIG_OFFSET the same fd maps physically contiguous,
 * pinned memory for DMA instead (rck_contig.c).
 *
 * This file holds the device: open/release, the ioctls, mmap and poll.
 * The ABI is include/regcache/kmod_uapi.h; the protocol is docs/kmod.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bits.h>
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "rck_compat.h"
#include "rck_internal.h"

#if BITS_PER_LONG != 64
#error "regcache needs 64-bit generation words that userspace loads whole"
#endif

#define RCK_MIN_RANGES 512U
#define RCK_MAX_RANGES BIT(24)
#define RCK_MIN_RING 64U
#define RCK_MAX_RING BIT(16)
#define RCK_MAX_WAKE_DELAY_US 1000000U

static unsigned int max_ranges = 1U << 20;
module_param(max_ranges, uint, 0644);
MODULE_PARM_DESC(max_ranges,
		 "Ranges per open file (512..16777216), read at open");

static unsigned int ring_entries = 2048;
module_param(ring_entries, uint, 0644);
MODULE_PARM_DESC(ring_entries,
		 "Event ring entries per open file (64..65536, power of two)");

/*
 * How long the notifier may leave a thread blocked in poll() asleep after
 * writing events (rck_notifier.c, "Waking the reader"). Generations are
 * bumped synchronously whatever this says.
 */
static unsigned int wake_delay_us = 1000;
module_param(wake_delay_us, uint, 0644);
MODULE_PARM_DESC(wake_delay_us,
		 "Defer poll() wake-ups by up to this many us, rounded up to jiffies (0: wake at once; max 1000000), read at open");

/* ---- the shared area ---------------------------------------------------- */

/*
 * The generation word of @slot, allocating its page on first use. Pages go
 * in with cmpxchg() so callers need no lock; a page that lost the race is
 * freed. Returns NULL if the page cannot be allocated.
 */
static u64 *rck_gen_word(struct rck_ctx *ctx, u32 slot)
{
	unsigned long index = slot / RCK_GENS_PER_PAGE;
	struct page *page = READ_ONCE(ctx->gen_pages[index]);

	if (!page) {
		struct page *new = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);

		if (!new)
			return NULL;
		page = cmpxchg(&ctx->gen_pages[index], NULL, new);
		if (page)
			__free_page(new);
		else
			page = new;
	}
	return (u64 *)page_address(page) + slot % RCK_GENS_PER_PAGE;
}

static vm_fault_t rck_vm_fault(struct vm_fault *vmf)
{
	struct rck_ctx *ctx = vmf->vma->vm_private_data;
	unsigned long pgoff = vmf->pgoff;
	struct page *page;

	if (pgoff < ctx->fixed_pages) {
		page = vmalloc_to_page((char *)ctx->shared +
				       (pgoff << PAGE_SHIFT));
	} else if (pgoff - ctx->fixed_pages < ctx->gen_npages) {
		u32 slot = (pgoff - ctx->fixed_pages) * RCK_GENS_PER_PAGE;

		if (!rck_gen_word(ctx, slot))
			return VM_FAULT_OOM;
		page = READ_ONCE(ctx->gen_pages[pgoff - ctx->fixed_pages]);
	} else {
		return VM_FAULT_SIGBUS;
	}
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct rck_vm_ops = {
	.fault = rck_vm_fault,
};

/*
 * What the area may become for the rest of its life: never writable or
 * executable (mprotect() needs VM_MAYWRITE/VM_MAYEXEC), never grown
 * (mremap()), never dumped, and never inherited by a fork child. VM_IO
 * makes madvise(MADV_DOFORK) fail with EINVAL, which would otherwise clear
 * VM_DONTCOPY and give the child the parent's generations; it also keeps
 * get_user_pages() (and so ibv_reg_mr()) and mlock() off the area.
 */
static void rck_vma_restrict(struct vm_area_struct *vma)
{
	rck_vm_flags_mod(vma,
			 VM_DONTEXPAND | VM_DONTCOPY | VM_DONTDUMP | VM_IO,
			 VM_MAYWRITE | VM_MAYEXEC);
}

static int rck_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct rck_ctx *ctx = file->private_data;
	unsigned long total = ctx->fixed_pages + ctx->gen_npages;

	if (current->mm != ctx->mm)
		return -EPERM;
	if (vma->vm_pgoff >= RCK_CONTIG_PGOFF)
		return rck_contig_mmap(ctx, vma);
	/* Read-only for good: no PROT_WRITE now, no mprotect() later. */
	if (vma->vm_flags & (VM_WRITE | VM_EXEC))
		return -EACCES;
	/*
	 * MAP_SHARED, not MAP_PRIVATE. VM_MAYSHARE, not VM_SHARED: the kernel
	 * clears VM_SHARED (and VM_MAYWRITE) for a MAP_SHARED mapping of a
	 * file opened O_RDONLY, which is the natural way to map this area.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_pgoff > total || vma_pages(vma) > total - vma->vm_pgoff)
		return -EINVAL;

	rck_vma_restrict(vma);
	vma->vm_ops = &rck_vm_ops;
	vma->vm_private_data = ctx;
	return 0;
}

/* ---- open and close ----------------------------------------------------- */

static void rck_free_gen_pages(struct rck_ctx *ctx)
{
	unsigned long i;

	for (i = 0; i < ctx->gen_npages; i++)
		if (ctx->gen_pages[i])
			__free_page(ctx->gen_pages[i]);
	kvfree(ctx->gen_pages);
}

static void rck_init_shared(struct rck_ctx *ctx)
{
	struct regcache_kmod_shared *sh = ctx->shared;

	sh->abi_version = REGCACHE_KMOD_ABI_VERSION;
	sh->header_size = sizeof(*sh);
	sh->max_ranges = ctx->max_ranges;
	sh->ring_entries = ctx->ring_entries;
	sh->ring_offset = PAGE_SIZE;
	sh->gen_offset = ctx->fixed_pages << PAGE_SHIFT;
	sh->map_size = (ctx->fixed_pages + ctx->gen_npages) << PAGE_SHIFT;
	ctx->ring = (void *)((char *)sh + PAGE_SIZE);
}

static int rck_open(struct inode *inode, struct file *file)
{
	unsigned int ranges = clamp(READ_ONCE(max_ranges), RCK_MIN_RANGES,
				    RCK_MAX_RANGES);
	unsigned int ring = clamp(READ_ONCE(ring_entries), RCK_MIN_RING,
				  RCK_MAX_RING);
	unsigned int delay_us = min(READ_ONCE(wake_delay_us),
				    RCK_MAX_WAKE_DELAY_US);
	struct rck_ctx *ctx;
	size_t ring_bytes;
	int ret;

	BUILD_BUG_ON(sizeof(struct regcache_kmod_shared) > PAGE_SIZE);
	BUILD_BUG_ON(PAGE_SIZE % sizeof(struct regcache_kmod_event));

	/* Kernel threads have no mm to watch. */
	if (!current->mm)
		return -EPERM;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	ctx->max_ranges = ranges;
	ctx->ring_entries = roundup_pow_of_two(ring);
	ring_bytes = (size_t)ctx->ring_entries *
		     sizeof(struct regcache_kmod_event);
	ctx->fixed_pages = 1 + DIV_ROUND_UP(ring_bytes, PAGE_SIZE);
	ctx->gen_npages = DIV_ROUND_UP(ranges, RCK_GENS_PER_PAGE);

	ctx->shared = vmalloc_user(ctx->fixed_pages << PAGE_SHIFT);
	if (!ctx->shared) {
		ret = -ENOMEM;
		goto err_free_ctx;
	}
	ctx->gen_pages = kvcalloc(ctx->gen_npages, sizeof(*ctx->gen_pages),
				  GFP_KERNEL_ACCOUNT);
	if (!ctx->gen_pages) {
		ret = -ENOMEM;
		goto err_free_shared;
	}
	rck_init_shared(ctx);
	mutex_init(&ctx->slot_lock);
	xa_init_flags(&ctx->slots, XA_FLAGS_ALLOC);
	spin_lock_init(&ctx->lock);
	ctx->tree = RB_ROOT_CACHED;
	ctx->stats.max_ranges = ranges;
	init_waitqueue_head(&ctx->wq);
	ctx->wake_delay = delay_us ? usecs_to_jiffies(delay_us) : 0;
	timer_setup(&ctx->wake_timer, rck_wake_timer_fn, 0);

	mmgrab(current->mm);
	ctx->mm = current->mm;
	ctx->mn.ops = &rck_mn_ops;
	ret = mmu_notifier_register(&ctx->mn, ctx->mm);
	if (ret)
		goto err_mmdrop;

	file->private_data = ctx;
	return nonseekable_open(inode, file);

err_mmdrop:
	mmdrop(ctx->mm);
	kvfree(ctx->gen_pages);
err_free_shared:
	vfree(ctx->shared);
err_free_ctx:
	kfree(ctx);
	return ret;
}

/*
 * The last reference to the file is gone: no ioctl, mmap or poll can be
 * running, and no mapping of the shared area is left (a mapping holds the
 * file). Unregistering waits for notifier callbacks in flight (SRCU); only
 * they arm wake_timer, so once it returns nothing can, and shutting the
 * timer down waits for a callback still running and makes any later
 * mod_timer() a no-op. Only then is the context freed.
 */
static int rck_release_file(struct inode *inode, struct file *file)
{
	struct rck_ctx *ctx = file->private_data;
	struct rck_range *range;
	unsigned long slot;

	mmu_notifier_unregister(&ctx->mn, ctx->mm);
	timer_shutdown_sync(&ctx->wake_timer);
	xa_for_each(&ctx->slots, slot, range)
		kfree(range);
	xa_destroy(&ctx->slots);
	rck_free_gen_pages(ctx);
	vfree(ctx->shared);
	mmdrop(ctx->mm);
	kfree(ctx);
	return 0;
}

/* ---- MONITOR and UNMONITOR ---------------------------------------------- */

static int rck_check_range(const struct regcache_kmod_range *r)
{
	if (r->flags || !r->length)
		return -EINVAL;
	if (!PAGE_ALIGNED(r->start) || !PAGE_ALIGNED(r->length))
		return -EINVAL;
	if (r->start + r->length < r->start)
		return -EINVAL;
	if (r->start + r->length > TASK_SIZE)
		return -EINVAL;
	return 0;
}

/* Undo a monitored range: UNMONITOR, and the rollback of a batch. */
static void rck_unmonitor_locked(struct rck_ctx *ctx, struct rck_range *range)
{
	lockdep_assert_held(&ctx->slot_lock);
	xa_erase(&ctx->slots, range->slot);
	spin_lock(&ctx->lock);
	rck_range_forget_locked(ctx, range);
	spin_unlock(&ctx->lock);
	kfree(range);
}

/*
 * Monitor @count ranges, all or none. Fills each element's slot and
 * generation. @nodes is scratch space for @count pointers; on success it
 * holds the new ranges (for a rollback should the copy-out fail).
 */
static int rck_monitor(struct rck_ctx *ctx, struct regcache_kmod_range *r,
		       struct rck_range **nodes, u32 count)
{
	u32 i, slotted = 0;
	int ret;

	for (i = 0; i < count; i++) {
		ret = rck_check_range(&r[i]);
		if (ret)
			return ret;
	}
	for (i = 0; i < count; i++) {
		nodes[i] = kzalloc(sizeof(*nodes[i]), GFP_KERNEL_ACCOUNT);
		if (!nodes[i]) {
			ret = -ENOMEM;
			goto err_free_nodes;
		}
		nodes[i]->start = r[i].start;
		nodes[i]->last = r[i].start + r[i].length - 1;
		nodes[i]->cookie = r[i].cookie;
	}

	mutex_lock(&ctx->slot_lock);
	for (; slotted < count; slotted++) {
		struct rck_range *node = nodes[slotted];

		ret = xa_alloc(&ctx->slots, &node->slot, node,
			       XA_LIMIT(0, ctx->max_ranges - 1),
			       GFP_KERNEL_ACCOUNT);
		if (ret) {
			if (ret == -EBUSY)
				ret = -ENOSPC;
			goto err_erase_slots;
		}
		node->gen = rck_gen_word(ctx, node->slot);
		if (!node->gen) {
			xa_erase(&ctx->slots, node->slot);
			ret = -ENOMEM;
			goto err_erase_slots;
		}
	}

	spin_lock(&ctx->lock);
	if (ctx->released) {
		spin_unlock(&ctx->lock);
		ret = -ESRCH;
		goto err_erase_slots;
	}
	for (i = 0; i < count; i++) {
		rck_range_insert_locked(ctx, nodes[i]);
		r[i].slot = nodes[i]->slot;
		r[i].generation = nodes[i]->insert_gen;
	}
	spin_unlock(&ctx->lock);
	mutex_unlock(&ctx->slot_lock);
	return 0;

err_erase_slots:
	for (i = 0; i < slotted; i++)
		xa_erase(&ctx->slots, nodes[i]->slot);
	mutex_unlock(&ctx->slot_lock);
	i = count;
err_free_nodes:
	while (i--)
		kfree(nodes[i]);
	return ret;
}

static void rck_monitor_rollback(struct rck_ctx *ctx, struct rck_range **nodes,
				 u32 count)
{
	u32 i;

	mutex_lock(&ctx->slot_lock);
	for (i = 0; i < count; i++)
		rck_unmonitor_locked(ctx, nodes[i]);
	mutex_unlock(&ctx->slot_lock);
}

static long rck_ioc_monitor(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_range r;
	struct rck_range *node;
	int ret;

	if (copy_from_user(&r, uarg, sizeof(r)))
		return -EFAULT;
	ret = rck_monitor(ctx, &r, &node, 1);
	if (ret)
		return ret;
	if (copy_to_user(uarg, &r, sizeof(r))) {
		rck_monitor_rollback(ctx, &node, 1);
		return -EFAULT;
	}
	return 0;
}

static long rck_ioc_monitor_batch(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_monitor_batch b;
	struct regcache_kmod_range *r;
	struct rck_range **nodes;
	void __user *uranges;
	size_t bytes;
	int ret;

	if (copy_from_user(&b, uarg, sizeof(b)))
		return -EFAULT;
	if (b.flags || !b.count)
		return -EINVAL;
	if (b.count > REGCACHE_KMOD_BATCH_MAX)
		return -E2BIG;
	uranges = u64_to_user_ptr(b.ranges);
	bytes = (size_t)b.count * sizeof(*r);

	r = vmemdup_user(uranges, bytes);
	if (IS_ERR(r))
		return PTR_ERR(r);
	nodes = kvcalloc(b.count, sizeof(*nodes), GFP_KERNEL);
	if (!nodes) {
		ret = -ENOMEM;
		goto out_free_ranges;
	}
	ret = rck_monitor(ctx, r, nodes, b.count);
	if (ret)
		goto out_free_nodes;
	if (copy_to_user(uranges, r, bytes)) {
		rck_monitor_rollback(ctx, nodes, b.count);
		ret = -EFAULT;
	}
out_free_nodes:
	kvfree(nodes);
out_free_ranges:
	kvfree(r);
	return ret;
}

static long rck_ioc_unmonitor(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_unmonitor u;
	struct rck_range *range;
	int ret = 0;

	if (copy_from_user(&u, uarg, sizeof(u)))
		return -EFAULT;
	if (u.flags || u.slot >= ctx->max_ranges)
		return -EINVAL;

	mutex_lock(&ctx->slot_lock);
	range = xa_load(&ctx->slots, u.slot);
	/* A stale token for a reused slot carries an older generation. */
	if (!range || range->insert_gen != u.generation)
		ret = -ENOENT;
	else
		rck_unmonitor_locked(ctx, range);
	mutex_unlock(&ctx->slot_lock);
	return ret;
}

/* ---- STATS, ACK_EVENTS, poll -------------------------------------------- */

static long rck_ioc_stats(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_stats st;

	spin_lock(&ctx->lock);
	st = ctx->stats;
	spin_unlock(&ctx->lock);
	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long rck_ioc_ack_events(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_ack a;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	spin_lock(&ctx->lock);
	ctx->acked = min(a.tail, ctx->head);
	a.head = ctx->head;
	spin_unlock(&ctx->lock);
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

static long rck_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct rck_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	/* A fork child or a process the fd was passed to: open your own. */
	if (current->mm != ctx->mm)
		return -EPERM;

	switch (cmd) {
	case REGCACHE_IOC_MONITOR:
		return rck_ioc_monitor(ctx, uarg);
	case REGCACHE_IOC_MONITOR_BATCH:
		return rck_ioc_monitor_batch(ctx, uarg);
	case REGCACHE_IOC_UNMONITOR:
		return rck_ioc_unmonitor(ctx, uarg);
	case REGCACHE_IOC_STATS:
		return rck_ioc_stats(ctx, uarg);
	case REGCACHE_IOC_ACK_EVENTS:
		return rck_ioc_ack_events(ctx, uarg);
	case REGCACHE_IOC_CONTIG_INFO:
		return rck_ioc_contig_info(ctx, uarg);
	default:
		return -ENOTTY;
	}
}

static __poll_t rck_poll(struct file *file, poll_table *wait)
{
	struct rck_ctx *ctx = file->private_data;
	__poll_t mask = 0;

	if (current->mm != ctx->mm)
		return EPOLLERR;
	poll_wait(file, &ctx->wq, wait);
	spin_lock(&ctx->lock);
	if (ctx->head != ctx->acked)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (ctx->released)
		mask |= EPOLLHUP;
	spin_unlock(&ctx->lock);
	return mask;
}

static const struct file_operations rck_fops = {
	.owner = THIS_MODULE,
	.open = rck_open,
	.release = rck_release_file,
	.unlocked_ioctl = rck_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = rck_mmap,
	.poll = rck_poll,
	/* No .llseek: nonseekable_open() makes lseek() fail (rck_compat.h). */
};

static struct miscdevice rck_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "regcache",
	.fops = &rck_fops,
};

static int __init rck_init(void)
{
	int ret;

	rck_contig_init();
	ret = misc_register(&rck_misc);
	if (ret)
		pr_err("cannot register /dev/regcache: %d\n", ret);
	return ret;
}

/*
 * Every context unregistered its notifier (and waited for its callbacks)
 * and shut its wake_timer down (waiting for a running callback) before the
 * module reference it held through rck_fops.owner was dropped, so nothing
 * of ours can still run here.
 */
static void __exit rck_exit(void)
{
	misc_deregister(&rck_misc);
}

module_init(rck_init);
module_exit(rck_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Synchronous invalidation for RDMA registration caches");
MODULE_VERSION("0.1.0");
