/* Replays an input of the fuzz harness's format (fuzz/fuzz_meter.c, seeds
 * from fuzz/make_corpus.py): frames of every link type handed in one by
 * one, with expiry, drains, snapshots, filtered expiry, settings changes
 * and flushes in between, printing what each step gives. */
#ifndef FLOWPROBE_REPLAY_CORPUS_H
#define FLOWPROBE_REPLAY_CORPUS_H

#include <stdio.h>

/* Returns 0, or -1 when the file cannot be read (reason on stderr). */
int replay_corpus_file(FILE *out, const char *path);

#endif
