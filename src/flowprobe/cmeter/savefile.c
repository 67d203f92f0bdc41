/* Capture files read in place (savefile.h). */
#include "savefile.h"
#include "meter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_HEADER 24
#define RECORD_HEADER 16
#define MAXIMUM_SNAPLEN 262144u  /* libpcap's bound for every link type the decoder reads */
/* Read at a time: small enough to stay in a router's cache while its
 * packets are metered (a 1 MiB buffer, written by the kernel, was read
 * back from memory); grown for a record larger than that.  The fuzz build
 * makes it tiny, so that short files cross its refills and growth. */
#ifdef SAVEFILE_BUFFER_BYTES
#define BUFFER_BYTES SAVEFILE_BUFFER_BYTES
#else
#define BUFFER_BYTES (256u << 10)
#endif

struct savefile {
	int fd;
	uint8_t swapped;
	uint8_t nanoseconds;
	uint8_t filtered;
	uint32_t snapshot;
	int libpcap_snapshot;      /* pcap_snapshot(), unbounded: libpcap's messages name it */
	uint8_t *buffer;
	uint32_t capacity;
	uint32_t start, end;       /* buffer[start, end): read, not yet taken */
	uint64_t offset;           /* the file offset of buffer[end] */
	struct bpf_program filter;
};

static inline uint32_t field32(const struct savefile *s, const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return s->swapped ? __builtin_bswap32(v) : v;
}

/* A time field as libpcap widens it: its 32-bit signed fields are sign
 * extended, but its byte swap (SWAPLONG) makes them unsigned first. */
static inline int64_t widened(const struct savefile *s, uint32_t field)
{
	return s->swapped ? (int64_t)field : (int64_t)(int32_t)field;
}

struct savefile *savefile_open(FILE *file)
{
	struct savefile *s;
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
	s->buffer = malloc(BUFFER_BYTES);
	if (!s->buffer) {
		free(s);
		return NULL;
	}
	s->capacity = BUFFER_BYTES;
	s->fd = fd;
	s->offset = FILE_HEADER;
	return s;
}

void savefile_adopt(struct savefile *s, pcap_t *handle)
{
	int snapshot = pcap_snapshot(handle);

	s->libpcap_snapshot = snapshot;
	s->snapshot = snapshot > 0 && (uint32_t)snapshot < MAXIMUM_SNAPLEN ? (uint32_t)snapshot
									     : MAXIMUM_SNAPLEN;
}

void savefile_close(struct savefile *s)
{
	if (!s)
		return;
	if (s->filtered)
		pcap_freecode(&s->filter);
	free(s->buffer);
	free(s);
}

int savefile_set_filter(struct savefile *s, pcap_t *handle, const char *bpf_filter,
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

/* Reads on until `bytes` wait in the buffer: 1, or 0 when the file (read
 * again: it may have grown) ends before them, -1 with errno at an error. */
static __attribute__((noinline)) int refill(struct savefile *s, uint32_t bytes)
{
	if (bytes > s->capacity - s->start) {  /* make room at the end */
		memmove(s->buffer, s->buffer + s->start, s->end - s->start);
		s->end -= s->start;
		s->start = 0;
	}
	if (bytes > s->capacity) {  /* a record longer than the buffer */
		uint8_t *grown = realloc(s->buffer, bytes);

		if (!grown) {
			errno = ENOMEM;
			return -1;
		}
		s->buffer = grown;
		s->capacity = bytes;
	}
	while (s->end - s->start < bytes) {
		ssize_t got = pread(s->fd, s->buffer + s->end, s->capacity - s->end, (off_t)s->offset);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -1;
		if (got == 0)
			return 0;
		s->end += (uint32_t)got;
		s->offset += (uint64_t)got;
	}
	/* where `read` shows its progress from: the descriptor's offset */
	lseek(s->fd, (off_t)s->offset, SEEK_SET);
	return 1;
}

/* `bytes` at the buffer's start, or NULL (refill's 0 or -1 in *status) */
static inline const uint8_t *take(struct savefile *s, uint32_t bytes, int *status)
{
	if (s->end - s->start >= bytes || (*status = refill(s, bytes)) > 0)
		return s->buffer + s->start;
	return NULL;
}

/* libpcap's words for a file that ends inside a record, or a read error */
static int truncated(const char *what, uint32_t wanted, uint32_t got, int status, char *error)
{
	if (status < 0)
		snprintf(error, FP_ERROR_SIZE, "error reading dump file: %s", strerror(errno));
	else
		snprintf(error, FP_ERROR_SIZE,
			 "truncated dump file; tried to read %u %s bytes, only got %u", wanted, what, got);
	return FP_DISPATCH_ERROR;
}

int savefile_dispatch(struct fp_meter *m, struct capture_source *source, int max_packets,
		      char *error)
{
	struct savefile *s = source->savefile;
	int count = 0, status = 1;

	while (max_packets <= 0 || count < max_packets) {
		const uint8_t *header = take(s, RECORD_HEADER, &status);
		const uint8_t *frame;
		uint32_t seconds, fraction, caplen, length;
		struct pcap_pkthdr h;
		uint64_t timestamp_us;

		if (!header) {
			if (status < 0 || s->end > s->start)
				return truncated("header", RECORD_HEADER, s->end - s->start, status, error);
			break;  /* the end of the file */
		}
		seconds = field32(s, header);
		fraction = field32(s, header + 4);
		caplen = field32(s, header + 8);
		length = field32(s, header + 12);
		if (caplen > MAXIMUM_SNAPLEN) {
			if (caplen > (uint32_t)s->libpcap_snapshot)
				snprintf(error, FP_ERROR_SIZE,
					 "invalid packet capture length %u, bigger than snaplen of %d",
					 caplen, s->libpcap_snapshot);
			else
				snprintf(error, FP_ERROR_SIZE,
					 "invalid packet capture length %u, bigger than maximum of %u",
					 caplen, MAXIMUM_SNAPLEN);
			return FP_DISPATCH_ERROR;
		}
		header = take(s, RECORD_HEADER + caplen, &status);
		if (!header) {
			/* libpcap reads the snapshot's bytes first, then the rest */
			uint32_t got = s->end - s->start - RECORD_HEADER;

			return truncated("captured", caplen > s->snapshot && got < s->snapshot
							     ? s->snapshot : caplen,
					 got, status, error);
		}
		frame = header + RECORD_HEADER;
		s->start += RECORD_HEADER + caplen;
		if (caplen > s->snapshot)  /* libpcap reads the snapshot and skips the rest */
			caplen = s->snapshot;
		/* as libpcap's fields, widened, scaled down */
		timestamp_us = (uint64_t)widened(s, seconds) * 1000000u +
			       (uint64_t)(s->nanoseconds ? widened(s, fraction) / 1000
							 : widened(s, fraction));
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
