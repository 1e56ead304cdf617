#!/usr/bin/env bash
# Runs the privileged test suite (tests/cli, already built) under one
# kernel: the host's root shared read-only over 9p, an ext4 disk as /tmp.
#   suite.sh KERNEL-ROOT TEST-BINARY OUT-PREFIX [TIMEOUT-SECONDS [TEST-ARGS...]]
# Writes OUT-PREFIX.console; prints the suite's summary and exits with the
# suite's exit code (2 if it did not finish). TEST-ARGS go to the test
# binary (words without spaces: --skip NAME).
set -euo pipefail
root=$1 binary=$2 prefix=$3 limit=${4:-900}
shift $(( $# < 4 ? $# : 4 ))
here=$(dirname "$0")
vmlinuz=$(find "$root/" -name 'vmlinuz*' -type f | head -1)
# The initramfs takes the file by its name, suite-command: one directory
# per run, so that runs side by side do not share it.
mkdir -p "$prefix.cmd"
echo "$PWD $binary $*" > "$prefix.cmd/suite-command"
"$here/initramfs.sh" "$root" "$prefix.cpio.gz" "$here/suite-init" \
    "9p 9pnet_virtio virtio_pci virtio_blk overlay loop ext4 xfs btrfs erofs" "$prefix.cmd/suite-command"
rm -f "$prefix.disk"
truncate -s 8G "$prefix.disk"
mkfs.ext4 -q -F "$prefix.disk"
timeout --foreground -k 5 "$limit" qemu-system-x86_64 -accel tcg,thread=multi -cpu max,-cx16 -smp 2 -m 2G \
    -nographic -no-reboot -nodefaults -serial stdio \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    -drive file="$prefix.disk",if=virtio,format=raw,cache=unsafe \
    -kernel "$vmlinuz" -initrd "$prefix.cpio.gz" -append "console=ttyS0 panic=-1 loglevel=4" \
    < /dev/null > "$prefix.console" 2>&1 || true
rm -f "$prefix.disk"
tr -d '\r' < "$prefix.console" | grep -E '^test result:|^SUITE-EXIT|^suite:' || true
code=$(tr -d '\r' < "$prefix.console" | sed -n 's/^SUITE-EXIT \([0-9]*\)$/\1/p' | tail -1)
exit "${code:-2}"
