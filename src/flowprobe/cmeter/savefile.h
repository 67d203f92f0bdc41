/* Capture files read in place: a classic pcap savefile (microsecond or
 * nanosecond magic, either byte order, version 2.4) is read with pread()
 * into a buffer that stays in the cache, and its records are handed to the
 * pipeline from there.  libpcap's reader goes through a 1 MiB stdio buffer
 * and copies every packet again into its own: it cost more than the
 * metering it feeds.  libpcap still opens the file (it checks the header
 * and names the link type and snapshot length), and reads everything this
 * does not take: pcapng, old versions, pipes.
 *
 * Records are taken as libpcap's savefile reader takes them: a capture
 * length above the snapshot length is cut to it, one above 262144 is an
 * error, a record cut short by the end of the file is an error (with
 * libpcap's messages), and a file that grows while it is read is read on. */
#ifndef FLOWPROBE_SAVEFILE_H
#define FLOWPROBE_SAVEFILE_H

#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>

struct fp_meter;
struct capture_source;
struct savefile;

/* The reader for an opened file (before libpcap reads from it), or NULL:
 * not a savefile this reads, libpcap reads it. */
struct savefile *savefile_open(FILE *file);
/* Once libpcap has opened the file: its snapshot length (as libpcap
 * adjusted it). */
void savefile_adopt(struct savefile *s, pcap_t *handle);
void savefile_close(struct savefile *s);
/* A BPF filter on the file's packets, as pcap_setfilter() would apply it. */
int savefile_set_filter(struct savefile *s, pcap_t *handle, const char *bpf_filter, char *error);
/* pcap_dispatch() for the file: packets to the meter until max_packets
 * (<= 0: no limit), the end of the file, or records waiting to be drained.
 * The packets handed over, or FP_DISPATCH_ERROR with the error set. */
int savefile_dispatch(struct fp_meter *m, struct capture_source *source, int max_packets,
		      char *error);

#endif
