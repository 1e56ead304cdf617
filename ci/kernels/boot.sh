#!/usr/bin/env bash
# Boots a kernel with an initramfs in QEMU (software emulation: this
# machine's /dev/kvm cannot boot a stock kernel; -cx16 because 6.12 took a
# double fault after cmpxchg16b without it) and prints the console.
#   boot.sh VMLINUZ INITRD [TIMEOUT-SECONDS]
set -euo pipefail
kernel=$1 initrd=$2 limit=${3:-300}
exec timeout --foreground -k 5 "$limit" qemu-system-x86_64 -accel tcg,thread=multi -cpu max,-cx16 -smp 2 -m 2G \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1 loglevel=4"
