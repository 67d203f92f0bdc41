/* Memory for the big tables.  A flow table of a few hundred thousand slots
 * spans thousands of 4 KiB pages, so each random lookup is a TLB miss as
 * well as a cache miss; aligned to 2 MiB and marked MADV_HUGEPAGE, it is
 * backed by huge pages where the kernel offers them (transparent huge
 * pages "madvise" or "always"), and by ordinary pages elsewhere. */
#ifndef FLOWPROBE_TABLE_MEMORY_H
#define FLOWPROBE_TABLE_MEMORY_H

#include <stdlib.h>
#include <sys/mman.h>

#define TABLE_HUGE_PAGE (2u << 20)

/* free() releases it */
static inline void *table_alloc(size_t bytes)
{
	void *p = NULL;

	if (bytes < TABLE_HUGE_PAGE)
		return malloc(bytes);
	if (posix_memalign(&p, TABLE_HUGE_PAGE, bytes))
		return NULL;
#ifdef MADV_HUGEPAGE
	madvise(p, bytes, MADV_HUGEPAGE);  /* advice only: EINVAL without THP changes nothing */
#endif
	return p;
}

#endif
