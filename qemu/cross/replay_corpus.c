/* The fuzz harness's input format, replayed with output (replay_corpus.h).
 * The semantics follow fuzz/fuzz_meter.c's header comment exactly, so a
 * seed means the same scenario here as there; where the harness checks,
 * this prints. */
#include "replay_corpus.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_cmeter.h"
#include "corpus_format.h"
#include "replay_print.h"

#define MAX_INPUT (1 << 20)

struct run {
	FILE *out;
	struct fp_meter *meter;
	struct fp_settings settings;
	uint64_t now_us;
	/* one byte past an aligned address: every field of every header is
	 * misaligned, so a cast load traps under qemu-mips (see README) */
	uint8_t frame_storage[65536 + 8] __attribute__((aligned(8)));
	uint8_t *frame;
	uint32_t length;
	uint32_t wire;
	int linktype;
	uint32_t ifindex;
	int have_frame;
};

static void process_last(struct run *r)
{
	fp_meter_process_frame(r->meter, r->linktype, r->ifindex, r->now_us, r->frame, r->length,
			       r->wire);
}

static void op_frame(struct run *r, uint8_t op, struct corpus_input *in)
{
	struct corpus_frame f;

	corpus_take_frame(in, op, &f);
	memcpy(r->frame, f.bytes, f.length);
	r->length = f.length;
	r->wire = f.wire;
	r->linktype = f.linktype;
	r->ifindex = f.ifindex;
	r->have_frame = 1;
	corpus_advance(&r->now_us, f.dt);
	process_last(r);
}

static void op_repeat(struct run *r, struct corpus_input *in)
{
	uint8_t count = corpus_take(in), pos = corpus_take(in), dt = corpus_take(in);
	unsigned i;

	if (!r->have_frame)
		return;
	for (i = 0; i < count + 1u; i++) {
		if (r->length)
			r->frame[pos % r->length] += 1;
		corpus_advance(&r->now_us, dt);
		process_last(r);
	}
}

static void op_expire_matching(struct run *r, struct corpus_input *in)
{
	struct fp_flow_filter filter;

	corpus_take_filter(in, &filter);
	fprintf(r->out, "expire_matching %d\n", fp_meter_expire_matching(r->meter, &filter));
}

static void op_update_settings(struct run *r, struct corpus_input *in)
{
	struct fp_settings s;
	char error[FP_ERROR_SIZE];
	int result;

	corpus_take_settings(in, &s);
	result = fp_meter_update_settings(r->meter, &s, error);
	fprintf(r->out, "update_settings %d%s%s\n", result, result ? " " : "", result ? error : "");
	if (result == 0)
		r->settings = s;
}

static void drain(struct run *r, int max)
{
	fprintf(r->out, "drain %d\n", max);
	print_drain(r->out, r->meter, (int)r->settings.bidirectional, max);
}

static void run_ops(struct run *r, struct corpus_input *in)
{
	uint8_t op;

	while (in->size) {
		op = corpus_take(in);
		if (op < 0xa0) {
			op_frame(r, op, in);
		} else if (op < 0xb0) {
			op_repeat(r, in);
		} else if (op < 0xb8) {
			int64_t now_ms = (int64_t)(r->now_us / 1000) + CORPUS_EXPIRE_STEPS_MS[op & 7];

			fprintf(r->out, "expire %lld\n", (long long)now_ms);
			fp_meter_expire(r->meter, now_ms > 0 ? (uint64_t)now_ms : 0);
		} else if (op < 0xc0) {
			drain(r, 1 << (op & 7));
		} else if (op < 0xc8) {
			print_snapshot(r->out, r->meter, NULL, (int)r->settings.bidirectional, (op & 7) + 1);
		} else if (op < 0xd0) {
			op_expire_matching(r, in);
		} else if (op < 0xd8) {
			op_update_settings(r, in);
		} else if (op < 0xe0) {
			print_counters(r->out, r->meter);
		} else if (op < 0xf0) {
			fprintf(r->out, "flush\n");
			fp_meter_flush(r->meter);
		} else {
			fprintf(r->out, "drain all\n");
			print_drain_all(r->out, r->meter, (int)r->settings.bidirectional);
		}
	}
}

int replay_corpus_file(FILE *out, const char *path)
{
	static uint8_t data[MAX_INPUT];
	struct corpus_input in = { data, 0 };
	char error[FP_ERROR_SIZE];
	struct run *r;
	FILE *file = fopen(path, "rb");

	if (!file) {
		perror(path);
		return -1;
	}
	in.size = fread(data, 1, sizeof(data), file);
	fclose(file);
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	corpus_take_settings(&in, &r->settings);
	r->out = out;
	r->frame = r->frame_storage + 1;
	r->now_us = CORPUS_START_US;
	r->meter = fp_meter_new(&r->settings, error);
	if (!r->meter) {
		fprintf(out, "fp_meter_new: %s\n", error);
		free(r);
		return 0;
	}
	run_ops(r, &in);
	fp_meter_flush(r->meter);
	fprintf(out, "end\n");
	print_drain_all(out, r->meter, (int)r->settings.bidirectional);
	print_counters(out, r->meter);
	fp_meter_free(r->meter);
	free(r);
	return 0;
}
