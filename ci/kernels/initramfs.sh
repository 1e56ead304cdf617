#!/usr/bin/env bash
# Builds an initramfs for one unpacked kernel package:
#   initramfs.sh KERNEL-ROOT OUT.cpio.gz INIT "MODULE..." [FILE...]
# busybox (static) in /bin, INIT as /init, the modules named with what they
# depend on (decompressed, in load order, listed in /modules/order), and
# each FILE in /.
set -euo pipefail
root=$1 out=$2 init=$3 modules=$4
shift 4
kver=$(ls "$root/lib/modules")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,proc,sys,dev,tmp,modules}
cp /bin/busybox "$work/bin/busybox"
cp "$init" "$work/init"
for file in "$@"; do cp "$file" "$work/"; done
: > "$work/modules/order"
for module in $modules; do
    # "insmod PATH" per module to load ("builtin NAME" for built-in ones);
    # one not found (built in on a kernel without modules.builtin, or
    # absent) is left to fail in the VM, where a check says what is missing.
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
(cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "$out"
