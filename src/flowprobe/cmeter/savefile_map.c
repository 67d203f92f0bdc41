/* Capture files read in place (savefile_map.h). */
#include "savefile_map.h"
#include "meter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_HEADER 24
#define RECORD_HEADER 16
#define MAXIMUM_SNAPLEN 262144u  /* libpcap's bound for every link type the decoder reads */
/* Mapped at a time: a bounded share of a 32-bit router's address space;
 * any record (at most a page + 16 + MAXIMUM_SNAPLEN bytes from the window's
 * start) fits whole in one window. */
#define WINDOW_BYTES (1u << 20)

struct savefile_map {
	int fd;
	uint8_t swapped;
	uint8_t nanoseconds;
	uint8_t filtered;
	uint32_t snapshot;
	uint64_t size;             /* the file's size when last looked */
	uint64_t offset;           /* the next record's header */
	const uint8_t *window;
	uint64_t window_at;        /* file offset of window[0], page aligned */
	size_t window_length;
	struct bpf_program filter;
};

static inline uint32_t field32(const struct savefile_map *s, const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return s->swapped ? __builtin_bswap32(v) : v;
}

struct savefile_map *savefile_map_open(FILE *file)
{
	struct savefile_map *s;
	uint8_t header[FILE_HEADER];
	uint32_t magic;
	uint16_t major, minor;
	struct stat st;
	int fd = fileno(file);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    pread(fd, header, sizeof(header), 0) != (ssize_t)sizeof(header))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	memcpy(&magic, header, 4);
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
		s->swapped = 0;
	} else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
		s->swapped = 1;
		magic = __builtin_bswap32(magic);
	} else {
		free(s);
		return NULL;  /* pcapng, the modified formats: libpcap's */
	}
	s->nanoseconds = magic == 0xa1b23c4d;
	memcpy(&major, header + 4, 2);
	memcpy(&minor, header + 6, 2);
	if (s->swapped) {
		major = __builtin_bswap16(major);
		minor = __builtin_bswap16(minor);
	}
	if (major != 2 || minor != 4) {  /* older ones swap lengths: libpcap knows how */
		free(s);
		return NULL;
	}
	s->fd = fd;
	s->size = (uint64_t)st.st_size;
	s->offset = FILE_HEADER;
	return s;
}

void savefile_map_adopt(struct savefile_map *s, pcap_t *handle)
{
	int snapshot = pcap_snapshot(handle);

	s->snapshot = snapshot > 0 && (uint32_t)snapshot < MAXIMUM_SNAPLEN ? (uint32_t)snapshot
									     : MAXIMUM_SNAPLEN;
}

static void unmap(struct savefile_map *s)
{
	if (s->window)
		munmap((void *)s->window, s->window_length);
	s->window = NULL;
	s->window_length = 0;
}

void savefile_map_close(struct savefile_map *s)
{
	if (!s)
		return;
	unmap(s);
	if (s->filtered)
		pcap_freecode(&s->filter);
	free(s);
}

int savefile_map_set_filter(struct savefile_map *s, pcap_t *handle, const char *bpf_filter,
			    char *error)
{
	struct bpf_program program;

	if (pcap_compile(handle, &program, bpf_filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(error, FP_ERROR_SIZE, "capture: filter \"%s\": %s", bpf_filter,
			 pcap_geterr(handle));
		return -1;
	}
	if (s->filtered)
		pcap_freecode(&s->filter);
	s->filter = program;
	s->filtered = 1;
	return 0;
}

/* the next window, from the page holding `at` */
static __attribute__((noinline)) const uint8_t *remap(struct savefile_map *s, uint64_t at,
							uint32_t bytes, int *error)
{
	static long page;
	uint64_t base, length;
	void *window;

	if (at + bytes > s->size) {
		struct stat st;

		if (fstat(s->fd, &st) == 0)
			s->size = (uint64_t)st.st_size;
		if (at + bytes > s->size)
			return NULL;
	}
	if (!page)
		page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
	unmap(s);
	base = at - at % (uint64_t)page;
	length = s->size - base < WINDOW_BYTES ? s->size - base : WINDOW_BYTES;
	window = mmap(NULL, (size_t)length, PROT_READ, MAP_SHARED, s->fd, (off_t)base);
	if (window == MAP_FAILED) {
		*error = errno;
		return NULL;
	}
	madvise(window, (size_t)length, MADV_SEQUENTIAL);  /* advice: read ahead, drop behind */
	s->window = window;
	s->window_at = base;
	s->window_length = (size_t)length;
	return s->window + (at - base);
}

/* bytes at file offset `at`, mapped; NULL when the file (looked at again:
 * it may have grown) ends before them, *error set when mapping failed */
static inline const uint8_t *view(struct savefile_map *s, uint64_t at, uint32_t bytes, int *error)
{
	if (at >= s->window_at && at + bytes <= s->window_at + s->window_length)
		return s->window + (at - s->window_at);
	return remap(s, at, bytes, error);
}

/* libpcap's words for a file that ends inside a record */
static int truncated(struct savefile_map *s, const char *what, uint32_t wanted, uint64_t from,
		     int map_error, char *error)
{
	if (map_error)
		snprintf(error, FP_ERROR_SIZE, "error reading dump file: %s", strerror(map_error));
	else
		snprintf(error, FP_ERROR_SIZE,
			 "truncated dump file; tried to read %u %s bytes, only got %llu", wanted, what,
			 (unsigned long long)(s->size > from ? s->size - from : 0));
	return FP_DISPATCH_ERROR;
}

int savefile_map_dispatch(struct fp_meter *m, struct capture_source *source, int max_packets,
			  char *error)
{
	struct savefile_map *s = source->map;
	int count = 0, map_error = 0;

	while (max_packets <= 0 || count < max_packets) {
		const uint8_t *header = view(s, s->offset, RECORD_HEADER, &map_error);
		const uint8_t *frame;
		uint32_t seconds, fraction, caplen, length;
		struct pcap_pkthdr h;
		uint64_t timestamp_us;

		if (!header) {
			if (map_error || s->offset < s->size)
				return truncated(s, "header", RECORD_HEADER, s->offset, map_error, error);
			break;  /* the end of the file */
		}
		seconds = field32(s, header);
		fraction = field32(s, header + 4);
		caplen = field32(s, header + 8);
		length = field32(s, header + 12);
		if (caplen > MAXIMUM_SNAPLEN) {
			if (caplen > s->snapshot)
				snprintf(error, FP_ERROR_SIZE,
					 "invalid packet capture length %u, bigger than snaplen of %u",
					 caplen, s->snapshot);
			else
				snprintf(error, FP_ERROR_SIZE,
					 "invalid packet capture length %u, bigger than maximum of %u",
					 caplen, MAXIMUM_SNAPLEN);
			return FP_DISPATCH_ERROR;
		}
		frame = view(s, s->offset + RECORD_HEADER, caplen, &map_error);
		if (!frame) {
			/* libpcap reads the snapshot's bytes first, then the rest */
			uint64_t from = s->offset + RECORD_HEADER;
			uint32_t wanted = caplen > s->snapshot && s->size - from < s->snapshot
						  ? s->snapshot : caplen;

			return truncated(s, "captured", wanted, from, map_error, error);
		}
		s->offset += RECORD_HEADER + (uint64_t)caplen;
		if (caplen > s->snapshot)  /* libpcap reads the snapshot and skips the rest */
			caplen = s->snapshot;
		/* as libpcap's 32-bit signed fields, widened, scaled down */
		timestamp_us = (uint64_t)(int64_t)(int32_t)seconds * 1000000u +
			       (uint64_t)(s->nanoseconds ? (int64_t)(int32_t)fraction / 1000
							 : (int64_t)(int32_t)fraction);
		if (s->filtered) {
			h.ts.tv_sec = (int32_t)seconds;
			h.ts.tv_usec = 0;
			h.caplen = caplen;
			h.len = length;
			if (!pcap_offline_filter(&s->filter, &h, frame))
				continue;
		}
		meter_offer(m, source->sampler, source->linktype, source->interface_slot,
			    timestamp_us, frame, caplen, length);
		source->packets_read++;
		source->octets_read += length;
		count++;
		/* pcap_breakloop()'s place: records pile up, the caller drains */
		if (m->batch_count == 0 && meter_backlogged(m))
			break;
	}
	return count;
}
