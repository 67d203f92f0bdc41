/* The libpcap floor: what reading a capture costs before any metering.
 * Opens the file as the meter does (stdio with a 1 MiB buffer, micro-
 * second timestamps), reads it with pcap_dispatch and an empty callback,
 * and prints the packets read.  bench.py sets every tool against it.
 *
 *     pcap_floor FILE */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>

#define FILE_BUFFER_BYTES (1 << 20)  /* as capture.c */

static void on_packet(u_char *user, const struct pcap_pkthdr *header, const u_char *bytes)
{
	(void)header;
	(void)bytes;
	++*(unsigned long long *)(void *)user;
}

int main(int argc, char **argv)
{
	char error[PCAP_ERRBUF_SIZE] = "";
	unsigned long long packets = 0;
	char *buffer = malloc(FILE_BUFFER_BYTES);
	FILE *file;
	pcap_t *handle;
	int n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE\n", argv[0]);
		return 2;
	}
	file = fopen(argv[1], "rb");
	if (!file || !buffer) {
		perror(argv[1]);
		return 1;
	}
	setvbuf(file, buffer, _IOFBF, FILE_BUFFER_BYTES);
	handle = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_MICRO, error);
	if (!handle) {
		fprintf(stderr, "%s: %s\n", argv[1], error);
		return 1;
	}
	while ((n = pcap_dispatch(handle, -1, on_packet, (u_char *)&packets)) > 0)
		;
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], pcap_geterr(handle));
		return 1;
	}
	pcap_close(handle);
	free(buffer);
	printf("%llu\n", packets);
	return 0;
}
