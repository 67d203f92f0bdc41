/* Memory for the big tables: reserved at start, resident only as used.
 *
 * A table's whole capacity is mapped when the meter starts (the meter
 * refuses to start when the mapping fails), but the kernel gives it pages
 * only at their first write: the tables encode "empty" as all zeros, so a
 * fresh table writes nothing and an idle probe stays small (a read of an
 * untouched page maps the shared zero page, which costs nothing).  Under
 * strict overcommit (vm.overcommit_memory 2) the mapping is charged whole
 * at start, so a router short of memory still fails then; under the
 * default heuristic, pages are found as flows arrive, as for any process.
 *
 * A flow table of a few hundred thousand slots spans thousands of 4 KiB
 * pages, so each random lookup is a TLB miss as well as a cache miss;
 * aligned to 2 MiB and marked MADV_HUGEPAGE, it is backed by huge pages
 * where the kernel offers them (transparent huge pages "madvise" or
 * "always"), and by ordinary pages elsewhere.  A huge page is faulted in
 * whole at its first write: a table that holds flows is soon resident in
 * full, an idle one still holds nothing. */
#ifndef FLOWPROBE_TABLE_MEMORY_H
#define FLOWPROBE_TABLE_MEMORY_H

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>

#define TABLE_HUGE_PAGE (2u << 20)
#if defined(__SANITIZE_ADDRESS__)   /* gcc */
#define TABLE_SANITIZED 1
#elif defined(__has_feature)        /* clang */
#if __has_feature(address_sanitizer)
#define TABLE_SANITIZED 1
#endif
#endif
#ifdef TABLE_SANITIZED
#define TABLE_MAPPED SIZE_MAX      /* calloc always: ASan checks every table's bounds */
#else
#define TABLE_MAPPED (64u << 10)   /* below: calloc (small tables, a few pages) */
#endif

/* Zeroed; NULL when the memory cannot be had.  table_free releases it. */
static inline void *table_alloc(size_t bytes)
{
	size_t extra = bytes >= TABLE_HUGE_PAGE ? TABLE_HUGE_PAGE : 0;
	uint8_t *p, *start;

	if (bytes < TABLE_MAPPED)
		return calloc(1, bytes ? bytes : 1);
	p = mmap(NULL, bytes + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (!extra)
		return p;
	/* 2 MiB aligned: the over-mapped head and tail go back at once */
	start = (uint8_t *)(((uintptr_t)p + TABLE_HUGE_PAGE - 1) & ~(uintptr_t)(TABLE_HUGE_PAGE - 1));
	if (start > p)
		munmap(p, (size_t)(start - p));
	if (p + bytes + extra > start + bytes) {
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		uint8_t *end = (uint8_t *)(((uintptr_t)(start + bytes) + page - 1) & ~(uintptr_t)(page - 1));

		if (p + bytes + extra > end)
			munmap(end, (size_t)(p + bytes + extra - end));
	}
#ifdef MADV_HUGEPAGE
	madvise(start, bytes, MADV_HUGEPAGE);  /* advice only: EINVAL without THP changes nothing */
#endif
	return start;
}

/* bytes: as given to table_alloc */
static inline void table_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < TABLE_MAPPED)
		free(p);
	else
		munmap(p, bytes);
}

/* Bytes of [p, p + bytes) in memory now (mincore); 0 when unknown. */
static inline uint64_t table_resident(const void *p, size_t bytes)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages, i;
	uint64_t resident = 0;
	unsigned char *vector;

	if (!p || !bytes)
		return 0;
	if (bytes < TABLE_MAPPED)
		return bytes;   /* calloc'd: counted whole */
	pages = (bytes + page - 1) / page;
	vector = malloc(pages);
	if (!vector)
		return 0;
	if (mincore((void *)p, pages * page, vector) == 0)
		for (i = 0; i < pages; i++)
			resident += vector[i] & 1;
	free(vector);
	return resident * page;
}

#endif
