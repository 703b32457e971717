// SPDX-License-Identifier: GPL-2.0
/*
 * Physically contiguous memory for DMA: mmap() of /dev/regcache at
 * REGCACHE_MMAP_CONTIG_OFFSET (include/regcache/kmod_uapi.h, docs/kmod.md).
 *
 * The mmap handler allocates the pages, zeroes them and inserts every one
 * into the new VMA with vm_insert_pages(), so touching the mapping never
 * faults (a fault handler maps the same page again should MADV_DONTNEED
 * have zapped it). They are ordinary order-0 pages with one reference of
 * the allocation's plus one per page table entry, in a VM_MIXEDMAP VMA that
 * is neither VM_IO nor VM_PFNMAP, so pin_user_pages() and with it
 * ibv_reg_mr() can pin them. Up to the buddy allocator's largest block they
 * come from alloc_pages() (split, the tail beyond the length given back);
 * larger ones from the kernel's contiguous range allocator, where the
 * kernel exports it (rck_contig_alloc_large()).
 *
 * Lifetime. A struct rck_contig is shared by every VMA that maps it: the
 * one mmap() made, the one mremap() moves it to, one a fork child got after
 * madvise(MADV_DOFORK) (6.1 and 6.12 allow that on a VM_MIXEDMAP VMA; 7.x
 * refuses it). vm_ops open and close count them; no VMA can be split
 * (may_split), so each maps the whole allocation. The last close drops the
 * allocation's reference on every page. A page that is still pinned (a
 * registration) lives until it is unpinned: its refcount sees to that.
 *
 * Accounting. Each VMA of an allocation in the mm that made it charges that
 * mm's locked_vm (VmLck) with its pages, checked against RLIMIT_MEMLOCK at
 * mmap() as mlock() checks it (unless CAP_IPC_LOCK), and uncharges it at
 * close. A fork child's VMA charges nothing, as mlock() is not inherited.
 * close runs with mmap_lock held for reading after munmap() downgraded it,
 * so the module changes locked_vm under mm->page_table_lock, as stack
 * expansion does under the read lock. Bytes and mappings are counted per
 * context, per mm (struct rck_contig_owner) and in all, under
 * rck_contig_lock; the module parameters bound the last two.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/hashtable.h>
#include <linux/highmem.h>
#include <linux/log2.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#include "rck_compat.h"
#include "rck_internal.h"

/* contig_max_total_mb until rck_contig_init() replaces it. */
#define RCK_CONTIG_TOTAL_AUTO UINT_MAX

static unsigned int contig_max_per_process_mb = 256;
module_param(contig_max_per_process_mb, uint, 0644);
MODULE_PARM_DESC(contig_max_per_process_mb,
		 "Contiguous memory one process may have mapped, MiB (0: none), checked at each mmap");

static unsigned int contig_max_total_mb = RCK_CONTIG_TOTAL_AUTO;
module_param(contig_max_total_mb, uint, 0644);
MODULE_PARM_DESC(contig_max_total_mb,
		 "Contiguous memory all processes together may have mapped, MiB (0: none; default a quarter of RAM), checked at each mmap");

/* From the buddy allocator: unmovable, zeroed, no OOM kill, no warning. */
#define RCK_CONTIG_GFP \
	(GFP_USER | __GFP_ZERO | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)
/* For the range allocator, which takes only reclaim and a few action flags. */
#define RCK_CONTIG_RANGE_GFP (GFP_KERNEL | __GFP_NOWARN)

/* vm_insert_pages() takes this many pages per call (one page of pointers). */
#define RCK_INSERT_BATCH (PAGE_SIZE / sizeof(struct page *))

/* What one mm has mapped; exists while it has at least one allocation. */
struct rck_contig_owner {
	struct hlist_node node;		/* in rck_contig_owners */
	/*
	 * The key; immutable. Not a reference of its own: every allocation
	 * counted here is mapped by a VMA, which holds the file, whose context
	 * holds mmgrab(mm).
	 */
	struct mm_struct *mm;
	u64 bytes;
	u64 mappings;
	/* protected by rck_contig_lock: node, bytes, mappings */
};

/* One mmap(): npages physically contiguous pages from pfn. */
struct rck_contig {
	unsigned long pfn;		/* immutable */
	unsigned long npages;		/* immutable */
	struct rck_ctx *ctx;		/* mapped from it; immutable */
	struct rck_contig_owner *owner;	/* mapped by its mm; immutable */
	unsigned int vmas;		/* VMAs that map it */
	/* protected by rck_contig_lock: vmas */
};

static DEFINE_SPINLOCK(rck_contig_lock);
static DEFINE_HASHTABLE(rck_contig_owners, 6);
static u64 rck_contig_total_bytes;
static u64 rck_contig_total_mappings;
/* protected by rck_contig_lock: the owners, the totals, rck_ctx.contig_* */

static u64 rck_mb_to_bytes(unsigned int mb)
{
	return (u64)mb << 20;
}

static u64 rck_contig_max_buddy_bytes(void)
{
	return (u64)PAGE_SIZE << RCK_MAX_BUDDY_ORDER;
}

/* ---- accounting --------------------------------------------------------- */

static struct rck_contig_owner *rck_contig_owner_locked(struct mm_struct *mm)
{
	struct rck_contig_owner *owner;

	lockdep_assert_held(&rck_contig_lock);
	hash_for_each_possible(rck_contig_owners, owner, node, (unsigned long)mm)
		if (owner->mm == mm)
			return owner;
	return NULL;
}

/*
 * Count @bytes for @ctx, its mm and the system, within the module's limits.
 * @spare becomes the mm's record if it has none yet (*spare is then NULL).
 * Returns the record, or ERR_PTR(-ENOMEM) over a limit.
 */
static struct rck_contig_owner *
rck_contig_reserve(struct rck_ctx *ctx, u64 bytes,
		   struct rck_contig_owner **spare)
{
	u64 max_process = rck_mb_to_bytes(READ_ONCE(contig_max_per_process_mb));
	u64 max_total = rck_mb_to_bytes(READ_ONCE(contig_max_total_mb));
	struct rck_contig_owner *owner;
	const char *param = NULL;
	u64 limit = 0;

	spin_lock(&rck_contig_lock);
	owner = rck_contig_owner_locked(ctx->mm);
	if ((owner ? owner->bytes : 0) + bytes > max_process) {
		param = "contig_max_per_process_mb";
		limit = max_process;
	} else if (rck_contig_total_bytes + bytes > max_total) {
		param = "contig_max_total_mb";
		limit = max_total;
	}
	if (param) {
		spin_unlock(&rck_contig_lock);
		pr_info_ratelimited("%s[%d]: %llu more bytes of contiguous memory would exceed %s (%llu MiB)\n",
				    current->comm, task_pid_nr(current), bytes,
				    param, limit >> 20);
		return ERR_PTR(-ENOMEM);
	}
	if (!owner) {
		owner = *spare;
		*spare = NULL;
		owner->mm = ctx->mm;
		hash_add(rck_contig_owners, &owner->node, (unsigned long)owner->mm);
	}
	owner->bytes += bytes;
	owner->mappings++;
	ctx->contig_bytes += bytes;
	ctx->contig_mappings++;
	rck_contig_total_bytes += bytes;
	rck_contig_total_mappings++;
	spin_unlock(&rck_contig_lock);
	return owner;
}

/* Undo rck_contig_reserve(); frees the mm's record with its last mapping. */
static void rck_contig_unreserve(struct rck_ctx *ctx,
				 struct rck_contig_owner *owner, u64 bytes)
{
	bool last;

	spin_lock(&rck_contig_lock);
	owner->bytes -= bytes;
	owner->mappings--;
	ctx->contig_bytes -= bytes;
	ctx->contig_mappings--;
	rck_contig_total_bytes -= bytes;
	rck_contig_total_mappings--;
	last = !owner->mappings;
	if (last)
		hash_del(&owner->node);
	spin_unlock(&rck_contig_lock);
	if (last)
		kfree(owner);
}

/*
 * Charge @mm's locked_vm with @npages as mlock() would: within
 * RLIMIT_MEMLOCK or with CAP_IPC_LOCK. Called from ->mmap, with mmap_lock
 * held for writing, so locked_vm cannot change under the check.
 */
static int rck_locked_vm_charge(struct mm_struct *mm, unsigned long npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;

	if (mm->locked_vm + npages > limit && !capable(CAP_IPC_LOCK))
		return limit ? -EAGAIN : -EPERM;
	spin_lock(&mm->page_table_lock);
	mm->locked_vm += npages;
	spin_unlock(&mm->page_table_lock);
	return 0;
}

/* Charge without a check (a VMA moved by mremap()), or uncharge. */
static void rck_locked_vm_add(struct mm_struct *mm, unsigned long npages)
{
	spin_lock(&mm->page_table_lock);
	mm->locked_vm += npages;
	spin_unlock(&mm->page_table_lock);
}

static void rck_locked_vm_sub(struct mm_struct *mm, unsigned long npages)
{
	spin_lock(&mm->page_table_lock);
	mm->locked_vm -= min(npages, mm->locked_vm);
	spin_unlock(&mm->page_table_lock);
}

/* ---- allocation --------------------------------------------------------- */

/* Up to the largest buddy block: one block, split, its tail given back. */
static bool rck_contig_alloc_buddy(struct rck_contig *c)
{
	unsigned int order = order_base_2(c->npages);
	unsigned long i;
	struct page *page;

	page = alloc_pages(RCK_CONTIG_GFP, order);
	if (!page)
		return false;
	split_page(page, order);
	for (i = c->npages; i < 1UL << order; i++)
		__free_page(page + i);
	c->pfn = page_to_pfn(page);
	return true;
}

#if RCK_HAVE_CONTIG_RANGE_ONLY
/*
 * alloc_contig_pages() for a kernel that exports only alloc_contig_range():
 * the search mm/page_alloc.c makes, over the zones an unmovable allocation
 * may use (never ZONE_MOVABLE, whose pages cannot be pinned for long), on
 * every online node. A candidate must lie in one zone, be online and hold
 * no reserved or hugetlb page; alloc_contig_range() then migrates what is
 * in it away, or fails and the next one is tried.
 */
static bool rck_contig_range_valid(struct zone *zone, unsigned long start,
				   unsigned long npages)
{
	unsigned long pfn;

	for (pfn = start; pfn < start + npages; pfn++) {
		struct page *page = pfn_to_online_page(pfn);

		if (!page || page_zone(page) != zone)
			return false;
		if (PageReserved(page) || PageHuge(page))
			return false;
	}
	return true;
}

static bool rck_contig_scan_zone(struct zone *zone, struct rck_contig *c)
{
	unsigned long step = roundup_pow_of_two(c->npages);
	unsigned long flags, pfn;

	spin_lock_irqsave(&zone->lock, flags);
	for (pfn = ALIGN(zone->zone_start_pfn, step);
	     zone_spans_pfn(zone, pfn + c->npages - 1); pfn += step) {
		if (!rck_contig_range_valid(zone, pfn, c->npages))
			continue;
		/* alloc_contig_range() takes zone->lock itself. */
		spin_unlock_irqrestore(&zone->lock, flags);
		if (!rck_alloc_contig_range(pfn, pfn + c->npages,
					    RCK_CONTIG_RANGE_GFP)) {
			c->pfn = pfn;
			return true;
		}
		if (fatal_signal_pending(current))
			return false;
		spin_lock_irqsave(&zone->lock, flags);
	}
	spin_unlock_irqrestore(&zone->lock, flags);
	return false;
}

static bool rck_contig_alloc_range(struct rck_contig *c)
{
	int nid, zid;

	for_each_online_node(nid) {
		for (zid = ZONE_NORMAL; zid >= 0; zid--) {
			struct zone *zone = &NODE_DATA(nid)->node_zones[zid];

			if (populated_zone(zone) && rck_contig_scan_zone(zone, c))
				return true;
			if (fatal_signal_pending(current))
				return false;
		}
	}
	return false;
}
#endif

/* The range allocator does not zero on every kernel: do it here. */
static void rck_contig_zero(struct rck_contig *c)
{
	unsigned long i;

	for (i = 0; i < c->npages; i++) {
		clear_highpage(pfn_to_page(c->pfn + i));
		if (!(i % RCK_INSERT_BATCH))
			cond_resched();
	}
}

/* Beyond the largest buddy block, where the kernel lets a module try. */
static bool rck_contig_alloc_large(struct rck_contig *c)
{
#if RCK_HAVE_CONTIG_PAGES
	struct page *page = alloc_contig_pages(c->npages, RCK_CONTIG_RANGE_GFP,
					       numa_node_id(), NULL);

	if (!page)
		return false;
	c->pfn = page_to_pfn(page);
#elif RCK_HAVE_CONTIG_RANGE_ONLY
	if (!rck_contig_alloc_range(c))
		return false;
#else
	return false;
#endif
	rck_contig_zero(c);
	return true;
}

static bool rck_contig_alloc(struct rck_contig *c)
{
	if (c->npages > totalram_pages())
		return false;
	if (c->npages <= 1UL << RCK_MAX_BUDDY_ORDER)
		return rck_contig_alloc_buddy(c);
	return rck_contig_alloc_large(c);
}

static void rck_contig_free_pages(struct rck_contig *c)
{
	unsigned long i;

	/*
	 * The allocation's reference. A page still mapped (the VMA whose
	 * mmap() failed is unmapped after this) or pinned goes when that
	 * reference does.
	 */
	for (i = 0; i < c->npages; i++) {
		put_page(pfn_to_page(c->pfn + i));
		if (!(i % RCK_INSERT_BATCH))
			cond_resched();
	}
}

/* ---- the VMA ------------------------------------------------------------ */

static void rck_contig_release(struct rck_contig *c)
{
	rck_contig_unreserve(c->ctx, c->owner, (u64)c->npages << PAGE_SHIFT);
	rck_contig_free_pages(c);
	kfree(c);
}

/* mremap() moved the VMA (same mm), or a fork child got it (MADV_DOFORK). */
static void rck_contig_vm_open(struct vm_area_struct *vma)
{
	struct rck_contig *c = vma->vm_private_data;

	spin_lock(&rck_contig_lock);
	c->vmas++;
	spin_unlock(&rck_contig_lock);
	if (vma->vm_mm == c->owner->mm)
		rck_locked_vm_add(vma->vm_mm, c->npages);
}

static void rck_contig_vm_close(struct vm_area_struct *vma)
{
	struct rck_contig *c = vma->vm_private_data;
	bool last;

	if (vma->vm_mm == c->owner->mm)
		rck_locked_vm_sub(vma->vm_mm, c->npages);
	spin_lock(&rck_contig_lock);
	last = !--c->vmas;
	spin_unlock(&rck_contig_lock);
	if (last)
		rck_contig_release(c);
}

/* Each VMA maps the whole allocation: munmap() or mprotect() of a part fails. */
static int rck_contig_vm_may_split(struct vm_area_struct *vma,
				   unsigned long addr)
{
	return -EINVAL;
}

/* Only after MADV_DONTNEED zapped a page: map the same page again. */
static vm_fault_t rck_contig_vm_fault(struct vm_fault *vmf)
{
	struct rck_contig *c = vmf->vma->vm_private_data;
	unsigned long index = (vmf->address - vmf->vma->vm_start) >> PAGE_SHIFT;
	struct page *page;

	if (index >= c->npages)
		return VM_FAULT_SIGBUS;
	page = pfn_to_page(c->pfn + index);
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct rck_contig_vm_ops = {
	.open = rck_contig_vm_open,
	.close = rck_contig_vm_close,
	.may_split = rck_contig_vm_may_split,
	.fault = rck_contig_vm_fault,
};

static int rck_contig_insert(struct vm_area_struct *vma, struct rck_contig *c)
{
	unsigned long done = 0;
	struct page **batch;
	int ret = 0;

	batch = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!batch)
		return -ENOMEM;
	while (done < c->npages) {
		unsigned long n = min(c->npages - done, RCK_INSERT_BATCH);
		unsigned long i, left = n;

		for (i = 0; i < n; i++)
			batch[i] = pfn_to_page(c->pfn + done + i);
		ret = vm_insert_pages(vma, vma->vm_start + (done << PAGE_SHIFT),
				      batch, &left);
		if (!ret && left)
			ret = -EFAULT;
		if (ret)
			break;
		done += n;
	}
	kfree(batch);
	return ret;
}

/**
 * rck_contig_mmap() - map physically contiguous memory into @vma
 * @ctx: the context of the file being mapped, bound to current->mm
 * @vma: the new VMA, at an offset of REGCACHE_MMAP_CONTIG_OFFSET or above
 *
 * Called from the device's ->mmap with mmap_lock held for writing.
 * Return: 0, or -EINVAL (offset, MAP_PRIVATE, PROT_EXEC), -EPERM or
 * -EAGAIN (RLIMIT_MEMLOCK), -ENOMEM (a module limit, or no contiguous
 * memory of that size).
 */
int rck_contig_mmap(struct rck_ctx *ctx, struct vm_area_struct *vma)
{
	struct rck_contig_owner *spare, *owner;
	struct mm_struct *mm = vma->vm_mm;
	struct rck_contig *c;
	int ret;

	if (vma->vm_pgoff != RCK_CONTIG_PGOFF)
		return -EINVAL;
	/*
	 * MAP_SHARED only: a private write would replace a page by an
	 * anonymous copy. VM_MAYSHARE, not VM_SHARED, which the kernel clears
	 * for a read-only mapping of a file opened O_RDONLY.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE) || (vma->vm_flags & VM_EXEC))
		return -EINVAL;

	c = kzalloc(sizeof(*c), GFP_KERNEL_ACCOUNT);
	spare = kzalloc(sizeof(*spare), GFP_KERNEL_ACCOUNT);
	if (!c || !spare) {
		ret = -ENOMEM;
		goto err_free;
	}
	c->npages = vma_pages(vma);
	c->ctx = ctx;
	c->vmas = 1;

	ret = rck_locked_vm_charge(mm, c->npages);
	if (ret)
		goto err_free;
	owner = rck_contig_reserve(ctx, (u64)c->npages << PAGE_SHIFT, &spare);
	if (IS_ERR(owner)) {
		ret = PTR_ERR(owner);
		goto err_uncharge;
	}
	c->owner = owner;
	if (!rck_contig_alloc(c)) {
		ret = -ENOMEM;
		goto err_unreserve;
	}

	/*
	 * Never grown by mremap(), never copied into a fork child (unless
	 * MADV_DOFORK, see the top of this file), not in core dumps, never
	 * executable. VM_MIXEDMAP is what vm_insert_pages() would set; not
	 * VM_IO or VM_PFNMAP, which would keep pin_user_pages() off.
	 */
	rck_vm_flags_mod(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTCOPY |
			 VM_DONTDUMP, VM_MAYEXEC);
	vma->vm_ops = &rck_contig_vm_ops;
	vma->vm_private_data = c;
	ret = rck_contig_insert(vma, c);
	if (ret)
		goto err_free_pages;
	kfree(spare);
	return 0;

	/* A failed ->mmap gets no close: the kernel unmaps what was inserted. */
err_free_pages:
	rck_contig_free_pages(c);
err_unreserve:
	rck_contig_unreserve(ctx, owner, (u64)c->npages << PAGE_SHIFT);
err_uncharge:
	rck_locked_vm_sub(mm, c->npages);
err_free:
	kfree(spare);
	kfree(c);
	return ret;
}

/**
 * rck_ioc_contig_info() - REGCACHE_IOC_CONTIG_INFO
 * @ctx: the caller's context
 * @uarg: struct regcache_kmod_contig_info to fill
 *
 * Return: 0 or -EFAULT.
 */
long rck_ioc_contig_info(struct rck_ctx *ctx, void __user *uarg)
{
	struct regcache_kmod_contig_info info = {};
	struct rck_contig_owner *owner;
	u64 max_buddy = rck_contig_max_buddy_bytes();

	info.max_process_bytes =
		rck_mb_to_bytes(READ_ONCE(contig_max_per_process_mb));
	info.max_total_bytes = rck_mb_to_bytes(READ_ONCE(contig_max_total_mb));
	info.max_buddy_bytes = max_buddy;
	info.max_bytes = min(info.max_process_bytes, info.max_total_bytes);
	if (RCK_HAVE_CONTIG_PAGES || RCK_HAVE_CONTIG_RANGE_ONLY)
		info.flags |= REGCACHE_KMOD_CONTIG_F_LARGE;
	else
		info.max_bytes = min(info.max_bytes, max_buddy);
	info.page_size = PAGE_SIZE;

	spin_lock(&rck_contig_lock);
	info.fd_bytes = ctx->contig_bytes;
	info.fd_mappings = ctx->contig_mappings;
	owner = rck_contig_owner_locked(ctx->mm);
	if (owner) {
		info.process_bytes = owner->bytes;
		info.process_mappings = owner->mappings;
	}
	info.total_bytes = rck_contig_total_bytes;
	info.total_mappings = rck_contig_total_mappings;
	spin_unlock(&rck_contig_lock);
	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

/**
 * rck_contig_init() - settle the defaults that depend on the machine
 *
 * contig_max_total_mb, unless given at load, becomes a quarter of RAM.
 */
void rck_contig_init(void)
{
	if (contig_max_total_mb == RCK_CONTIG_TOTAL_AUTO)
		contig_max_total_mb =
			min_t(unsigned long, (totalram_pages() >> (20 - PAGE_SHIFT)) / 4,
			      RCK_CONTIG_TOTAL_AUTO - 1);
}
