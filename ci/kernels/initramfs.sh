#!/usr/bin/env bash
# Builds the test initramfs for one unpacked kernel package:
#   initramfs.sh KERNEL-ROOT TOOL-BINARY OUT.cpio.gz
# busybox (static), the static tool, /init (ci/kernels/init), the overlay
# and loop modules with what they depend on (decompressed, in load order),
# and an empty ext4 image for the layers and the state directory.
set -euo pipefail
root=$1 bin=$2 out=$3
here=$(dirname "$0")
kver=$(ls "$root/lib/modules")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,proc,sys,dev,tmp,modules}
cp /bin/busybox "$work/bin/busybox"
cp "$bin" "$work/idmap-overlay"
cp "$here/init" "$work/init"
: > "$work/modules/order"
for module in overlay loop ext4; do
    # "insmod PATH" per module to load, "builtin NAME" for built-in ones;
    # an absent one (a kernel without modules.builtin) is left to fail in
    # the VM, where the check says what is missing.
    { modprobe -d "$root" -S "$kver" --show-depends "$module" 2>/dev/null || true; } | awk '$1 == "insmod" {print $2}' |
    while read -r path; do
        name=$(basename "$path")
        name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
        grep -qx "$name" "$work/modules/order" && continue
        case "$path" in
        *.xz) xz -dc "$path" > "$work/modules/$name" ;;
        *.zst) zstd -qdc "$path" > "$work/modules/$name" ;;
        *.gz) gzip -dc "$path" > "$work/modules/$name" ;;
        *) cp "$path" "$work/modules/$name" ;;
        esac
        echo "$name" >> "$work/modules/order"
    done
done
truncate -s 48M "$work/disk.ext4"
mkfs.ext4 -q -F "$work/disk.ext4"
(cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "$out"
