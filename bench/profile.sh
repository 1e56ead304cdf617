#!/usr/bin/env bash
# Where the library API's in-process time goes beyond the floor's: the
# evidence behind bench/profile-notes.md, regenerated on demand.
#
#   sudo bench/profile.sh [CYCLES]     (default 20; writes bench/out/profile/)
#
# Builds bench/inproc-api and the Rust floor with line tables, then, in a
# private mount namespace with its own tmpfs state directory, runs CYCLES
# detached 50-layer mount + umount cycles of each:
#   - under callgrind (user-space instructions, repeatable from run to run):
#     callgrind.{api,floor}, and api-inclusive.txt / api-self.txt from
#     callgrind_annotate;
#   - under strace -f -c (system calls, and the kernel time strace sees):
#     strace.{api,floor}.txt.
# Callgrind does not see kernel time; strace does not see user time: read
# the two together. Needs valgrind, strace, cargo, unshare; installs nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cycles=${1:-20}
[ "$(id -u)" = 0 ] || { echo "profile: must run as root: it mounts (in its own namespace)" >&2; exit 1; }
need=()
for c in valgrind callgrind_annotate strace cargo unshare; do
    command -v "$c" >/dev/null || need+=("$c")
done
[ ${#need[@]} = 0 ] || { echo "profile: missing ${need[*]}" >&2; exit 1; }

out=$here/out/profile
mkdir -p "$out"
target=$here/out/target-profile
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=$target
cargo build --release --quiet --manifest-path "$here/inproc-api/Cargo.toml"
cargo build --release --quiet --manifest-path "$here/floor/Cargo.toml" --bin floor
api=$target/release/inproc-api floor=$target/release/floor

work=$(mktemp -d /tmp/iop.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
# Everything below runs in the private namespace: its mounts end with it.
unshare -m --propagation private bash -euo pipefail -s "$work" "$cycles" "$api" "$floor" "$out" <<'EOF'
work=$1 cycles=$2 api=$3 floor=$4 out=$5
mkdir -p "$work/r" "$work/m" "$work/up" "$work/wk"
mount -t tmpfs -o mode=0700 profile-state "$work/r"
layers=() rels=()
for i in $(seq 1 50); do
    mkdir -p "$work/snapshots/$i/fs"
    echo "$i" >"$work/snapshots/$i/fs/file-$i"
    layers+=("$work/snapshots/$i/fs") rels+=("$i/fs")
done
export IDMAP_OVERLAY_STATE_DIR=$work/r/s
api_argv=("$api" 1 "$cycles" detached "$work/m" "$work/up" "$work/wk" 0:100000:65536 "${layers[@]}")
floor_argv=("$floor" cycles 1 "$cycles" "$work/m" "$work/snapshots" "$work/up" "$work/wk" "0 100000 65536" "${rels[@]}")
valgrind -q --tool=callgrind --callgrind-out-file="$out/callgrind.api" "${api_argv[@]}" >/dev/null
valgrind -q --tool=callgrind --callgrind-out-file="$out/callgrind.floor" "${floor_argv[@]}" >/dev/null
strace -f -c -o "$out/strace.api.txt" "${api_argv[@]}" >/dev/null
strace -f -c -o "$out/strace.floor.txt" "${floor_argv[@]}" >/dev/null
EOF
callgrind_annotate --inclusive=yes "$out/callgrind.api" 2>/dev/null | head -80 >"$out/api-inclusive.txt"
callgrind_annotate "$out/callgrind.api" 2>/dev/null | head -60 >"$out/api-self.txt"
callgrind_annotate "$out/callgrind.floor" 2>/dev/null | head -30 >"$out/floor-self.txt"
echo "profile: $cycles cycles (+1 warm-up) each; results in $out" >&2
grep -h 'PROGRAM TOTALS' "$out"/api-self.txt "$out"/floor-self.txt >&2 || true
