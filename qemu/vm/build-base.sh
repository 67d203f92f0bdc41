#!/bin/sh
# The test guest's base system, built offline from Debian packages with
# mmdebstrap (about a minute): OUTDIR/vmlinuz, OUTDIR/initrd.img and the root
# tree OUTDIR/rootfs, slimmed, with the test init installed. flowprobe is not
# in it: image.py stages the package's files on top of a copy for each image.
# Usage: build-base.sh OUTDIR PACKAGE_LIST GUEST_INIT
set -eu
out=$1
package_list=$2
guest_init=$3
root=$out/rootfs

# the Debian mirror the host's own apt uses (deb822 or one-line format)
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
	grep -v security | head -n 1 || true)
if [ -z "$mirror" ]; then
	mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
fi
[ -n "$mirror" ] || {
	echo "build-base.sh: no Debian mirror found in /etc/apt/sources.list*" >&2
	exit 1
}

packages=$(grep -v '^[[:space:]]*#' "$package_list" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
rm -rf "$root"
mkdir -p "$out"
mmdebstrap --quiet --mode=root --variant=minbase --include="$packages" \
	--customize-hook='echo flowprobe-guest > "$1/etc/hostname"' \
	--customize-hook='chroot "$1" passwd -d root' \
	--customize-hook='printf "/dev/vda / ext4 rw,relatime 0 1\n" > "$1/etc/fstab"' \
	bookworm "$root" "$mirror"

# a small initrd: only what mounts the virtio root (Debian's MODULES=most is 36 MB, and
# unpacking it under TCG costs several seconds of every boot)
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/flowprobe-test"
printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all

cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
install -m 755 "$guest_init" "$root/usr/local/sbin/flowprobe-test-init"

# drop what a headless virtio guest never loads or reads (half the tree)
kernel_version=$(ls "$root/usr/lib/modules")
modules=$root/usr/lib/modules/$kernel_version/kernel
rm -rf "$root"/boot/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
	"$root"/usr/share/info/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
for unused in sound drivers/gpu drivers/media drivers/infiniband drivers/iio drivers/staging \
	drivers/hwmon drivers/scsi drivers/usb drivers/hid drivers/platform drivers/md \
	drivers/bluetooth drivers/isdn drivers/net/wireless drivers/net/ethernet drivers/net/can \
	net/bluetooth net/wireless net/mac80211; do
	rm -rf "${modules:?}/$unused"
done
chroot "$root" depmod -a "$kernel_version"
echo "build-base.sh: $(du -sm "$root" | cut -f1) MB root tree, kernel $kernel_version"
