/* Capture files read in place: a classic pcap savefile (microsecond or
 * nanosecond magic, either byte order, version 2.4) is mapped window by
 * window and its records handed to the pipeline straight from the page
 * cache.  libpcap's reader copies every packet twice (kernel → stdio
 * buffer → its own buffer) and costs more than the metering it feeds; the
 * pipeline reads only the headers.  libpcap still opens the file (it
 * checks the header and names the link type and snapshot length), and
 * reads everything this does not take: pcapng, old versions, pipes.
 *
 * Records are taken as libpcap's savefile reader takes them: a capture
 * length above the snapshot length is cut to it, one above 262144 is an
 * error, a record cut short by the end of the file is an error (with
 * libpcap's messages), and a file that grows while it is read is read on. */
#ifndef FLOWPROBE_SAVEFILE_MAP_H
#define FLOWPROBE_SAVEFILE_MAP_H

#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>

struct fp_meter;
struct capture_source;
struct savefile_map;

/* The reader for an opened file (before libpcap reads from it), or NULL:
 * not a savefile this reads, libpcap reads it. */
struct savefile_map *savefile_map_open(FILE *file);
/* Once libpcap has opened the file: its snapshot length (as libpcap
 * adjusted it). */
void savefile_map_adopt(struct savefile_map *s, pcap_t *handle);
void savefile_map_close(struct savefile_map *s);
/* A BPF filter on the file's packets, as pcap_setfilter() would apply it. */
int savefile_map_set_filter(struct savefile_map *s, pcap_t *handle, const char *bpf_filter,
			    char *error);
/* pcap_dispatch() for the file: packets to the meter until max_packets
 * (<= 0: no limit), the end of the file, or records waiting to be drained.
 * The packets handed over, or FP_DISPATCH_ERROR with the error set. */
int savefile_map_dispatch(struct fp_meter *m, struct capture_source *source, int max_packets,
			  char *error);

#endif
