/* Force-included (-include) by tools/openwrt-userland/build.sh when the C
 * library lacks strlcpy (glibc before 2.38; OpenWrt's musl has it; rpcd
 * uses it). No #include here: a header read before the source's own
 * _GNU_SOURCE would fix the feature set without it (struct ucred). */
#ifndef OPENWRT_USERLAND_COMPAT_H
#define OPENWRT_USERLAND_COMPAT_H

static inline __SIZE_TYPE__ compat_strlcpy(char *dst, const char *src, __SIZE_TYPE__ size)
{
	__SIZE_TYPE__ len = __builtin_strlen(src);

	if (size) {
		__SIZE_TYPE__ n = len < size - 1 ? len : size - 1;
		__builtin_memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}
#define strlcpy compat_strlcpy

#endif
