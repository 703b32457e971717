/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every difference between the kernels the regcache module builds for
 * (Debian's 6.1, 6.12 and 7.x, and whatever lies between) in one place, so
 * the rest of the module is written against one API. Each shim says which
 * kernel changed what; a feature test beats a version test where the
 * kernel offers one (a macro that is there or not).
 */
#ifndef RCK_COMPAT_H
#define RCK_COMPAT_H

#include <linux/gfp.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/timer.h>
#include <linux/version.h>

/*
 * 6.3 made vm_flags read-only outside mm and added vm_flags_mod(), which
 * also asserts that mmap_lock is held for writing (it is, in ->mmap).
 */
static inline void rck_vm_flags_mod(struct vm_area_struct *vma,
				    vm_flags_t set, vm_flags_t clear)
{
#if KERNEL_VERSION(6, 3, 0) <= LINUX_VERSION_CODE
	vm_flags_mod(vma, set, clear);
#else
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
#endif
}

/*
 * 6.16 renamed from_timer() to timer_container_of(); both are macros, so
 * the new name's absence is the test.
 */
#ifndef timer_container_of
#define timer_container_of(var, timer, field) from_timer(var, timer, field)
#endif

/*
 * The buddy allocator's largest order. It was MAX_ORDER - 1 before 6.4,
 * MAX_ORDER from 6.4 and MAX_PAGE_ORDER from 6.8; MAX_ORDER_NR_PAGES has
 * been the largest block's size in pages throughout.
 */
#define RCK_MAX_BUDDY_ORDER ilog2(MAX_ORDER_NR_PAGES)

/*
 * Contiguous memory beyond that order. Which allocator a module may call is
 * a matter of exports, which no header shows, so Kbuild reads the kernel's
 * Module.symvers: RCK_EXPORTS_ALLOC_CONTIG_PAGES when alloc_contig_pages()
 * is exported (7.x), RCK_EXPORTS_ALLOC_CONTIG_RANGE when
 * alloc_contig_range() is (6.1, 6.12 and 7.x; without the former the module
 * searches for a free range itself, rck_contig.c). 6.16 replaced
 * alloc_contig_range()'s migratetype by acr_flags_t.
 */
#if defined(RCK_EXPORTS_ALLOC_CONTIG_PAGES) && IS_ENABLED(CONFIG_CONTIG_ALLOC)
#define RCK_HAVE_CONTIG_PAGES 1
#else
#define RCK_HAVE_CONTIG_PAGES 0
#endif

#if !RCK_HAVE_CONTIG_PAGES && defined(RCK_EXPORTS_ALLOC_CONTIG_RANGE) && \
	IS_ENABLED(CONFIG_CONTIG_ALLOC)
#define RCK_HAVE_CONTIG_RANGE_ONLY 1
static inline int rck_alloc_contig_range(unsigned long start, unsigned long end,
					 gfp_t gfp)
{
#ifdef ACR_FLAGS_NONE
	return alloc_contig_range(start, end, ACR_FLAGS_NONE, gfp);
#else
	return alloc_contig_range(start, end, MIGRATE_MOVABLE, gfp);
#endif
}
#else
#define RCK_HAVE_CONTIG_RANGE_ONLY 0
#endif

/*
 * Not a shim but the reason there is none: file_operations.llseek is left
 * unset. no_llseek() went away in 6.12; since 6.0 a file without ->llseek
 * that was opened with nonseekable_open() already fails lseek() with
 * ESPIPE, which is all no_llseek() did.
 */

#endif /* RCK_COMPAT_H */
