/* What the replay driver prints: records as the core formats them (JSON)
 * and packs them (export data records, network byte order, as hex),
 * snapshots and counters.  Nothing here may depend on the host: the
 * output of every architecture is compared byte for byte. */
#ifndef FLOWPROBE_REPLAY_PRINT_H
#define FLOWPROBE_REPLAY_PRINT_H

#include <stdint.h>
#include <stdio.h>

#include "_cmeter.h"

#define REPLAY_BATCH 256

/* Drains every waiting record and prints it; returns how many. */
uint64_t print_drain_all(FILE *out, struct fp_meter *meter, int bidirectional);
/* Drains at most max records (a partial drain, as the daemon may do). */
int print_drain(FILE *out, struct fp_meter *meter, int bidirectional, int max);
/* The live table (matching filter, NULL: all), batch records at a time. */
void print_snapshot(FILE *out, struct fp_meter *meter, const struct fp_flow_filter *filter,
		    int bidirectional, int batch);
/* Every counter but the tables' memory, which follows the pointer size. */
void print_counters(FILE *out, struct fp_meter *meter);

#endif
