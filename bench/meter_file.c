/* The C core alone on a capture: fp_meter reads the file, records are
 * drained and dropped (no Python, no output).  For callgrind and
 * cachegrind, whose counts this keeps free of the interpreter's start-up,
 * and for bench.py's "C core ÷ floor".  Settings are flowprobe's defaults.
 *
 *     meter_file FILE MAX_FLOWS */
#include <stdio.h>
#include <stdlib.h>

#include "_cmeter.h"

#define DRAIN 1024

int main(int argc, char **argv)
{
	static struct fp_record records[DRAIN];
	struct fp_settings settings = {
		.max_flows = 65536, .max_fragments = 4096, .idle_timeout_ms = 15000,
		.active_timeout_ms = 300000, .unanswered_timeout_ms = 5000,
		.tcp_end_grace_ms = 2000, .fragment_timeout_ms = 30000,
		.overflow_policy = FP_OVERFLOW_EVICT_OLDEST, .hash_seed = 1,
	};
	unsigned long long packets = 0, records_drained = 0;
	char error[FP_ERROR_SIZE];
	struct fp_meter *meter;
	int source, n;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE MAX_FLOWS\n", argv[0]);
		return 2;
	}
	settings.max_flows = (uint32_t)strtoul(argv[2], NULL, 10);
	meter = fp_meter_new(&settings, error);
	if (!meter || (source = fp_meter_open_offline(meter, argv[1], 0, error)) < 0) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	for (;;) {
		while ((n = fp_meter_drain(meter, records, DRAIN)) > 0)
			records_drained += (unsigned)n;
		n = fp_meter_dispatch(meter, source, 0, error);
		if (n < 0) {
			fprintf(stderr, "%s\n", error);
			return 1;
		}
		if (n == 0)
			break;  /* nothing waits after a drain: the end of the file */
		packets += (unsigned)n;
	}
	fp_meter_flush(meter);
	while ((n = fp_meter_drain(meter, records, DRAIN)) > 0)
		records_drained += (unsigned)n;
	printf("%llu packets, %llu records, memory_bytes %llu\n", packets, records_drained,
	       (unsigned long long)fp_meter_memory_bytes(meter));
	fp_meter_free(meter);
	return 0;
}
