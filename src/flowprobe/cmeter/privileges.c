/* Dropping root once the capture handles and sockets are open.
 *
 * The daemon keeps only the capabilities it names: CAP_NET_RAW, so it can
 * still open an interface that appears later or is added by a reload, and
 * CAP_NET_ADMIN with the conntrack source (its table dumps need it);
 * everything else root could do is gone, from the bounding set as well, and
 * no_new_privs means nothing it might execute could get it back.  Direct syscalls: no libcap on a router. */

#define _GNU_SOURCE /* setresuid, setresgid */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_cmeter.h"

static int fail(char *error, size_t size, const char *doing)
{
	snprintf(error, size, "%s: %s", doing, strerror(errno));
	return -1;
}

/* The bounding set too: a capability outside it can never come back, even
 * through a file capability (no_new_privs covers exec; this covers the rest). */
static int drop_bounding_set(uint64_t keep)
{
	for (int capability = 0; capability < 64; capability++) {
		if (keep >> capability & 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) < 0) {
			if (errno == EINVAL) /* beyond the kernel's last capability */
				break;
			return -1;
		}
	}
	return 0;
}

static int set_capabilities(uint64_t keep)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)keep;
	data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
	return (int)syscall(SYS_capset, &header, data);
}

int fp_drop_privileges(unsigned int uid, unsigned int gid, uint64_t keep, char *error,
		       size_t error_size)
{
	gid_t groups[1] = { gid };

	if (drop_bounding_set(keep) < 0) /* needs CAP_SETPCAP: while still root */
		return fail(error, error_size, "prctl(PR_CAPBSET_DROP)");
	if (setgroups(1, groups) < 0)
		return fail(error, error_size, "setgroups");
	if (setresgid(gid, gid, gid) < 0)
		return fail(error, error_size, "setresgid");
	/* without KEEPCAPS, setuid away from root clears the permitted set */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return fail(error, error_size, "prctl(PR_SET_KEEPCAPS)");
	if (setresuid(uid, uid, uid) < 0)
		return fail(error, error_size, "setresuid");
	if (set_capabilities(keep) < 0)
		return fail(error, error_size, "capset");
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return fail(error, error_size, "prctl(PR_SET_KEEPCAPS)");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(error, error_size, "prctl(PR_SET_NO_NEW_PRIVS)");
	/* dumpable again (setuid cleared it): the user may read /proc/self */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	return 0;
}
