#!/usr/bin/env bash
# Where the library API's in-process time goes beyond the floor's, and the
# tool's whole-process time: the evidence behind bench/profile-notes.md,
# regenerated on demand (not part of bench/run.sh).
#
#   sudo bench/profile.sh [CYCLES]     (default 300; writes bench/out/profile/)
#
# Builds bench/inproc-api and the Rust floor with line tables, then, in a
# private mount namespace with its own tmpfs state directory, runs CYCLES
# detached 50-layer mount + umount cycles:
#   - the API under perf (cpu-clock samples, DWARF call graphs):
#     perf.api.data, and api-children.txt (inclusive shares by function);
#   - the API and the floor under strace -f -c: strace.{api,floor}.txt;
#   - the API and the floor timed by bash: cpu.{api,floor}.txt (user and
#     system CPU, wall);
#   - CYCLES / 2 whole-process mount + umount pairs of the tool as
#     scripts/install.sh builds it, under perf: perf.tool.data and
#     tool-children.txt.
# perf samples on-CPU time only (user and kernel); time spent waiting (for
# an RCU grace period in umount2, say) shows in the wall times alone.
# Callgrind would count instructions more repeatably, but valgrind (3.19)
# stops at the clone(CLONE_NEWUSER | CLONE_FILES) that makes the user
# namespace. Needs perf, strace, cargo, unshare; installs nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cycles=${1:-300}
[ "$(id -u)" = 0 ] || { echo "profile: must run as root: it mounts (in its own namespace)" >&2; exit 1; }
need=()
for c in perf strace cargo unshare; do command -v "$c" >/dev/null || need+=("$c"); done
[ ${#need[@]} = 0 ] || { echo "profile: missing ${need[*]}" >&2; exit 1; }

out=$here/out/profile
mkdir -p "$out"
tool=$(bash "$repo/scripts/install.sh" build)
target=$here/out/target-profile
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=$target
cargo build --release --quiet --manifest-path "$here/inproc-api/Cargo.toml"
cargo build --release --quiet --manifest-path "$here/floor/Cargo.toml" --bin floor
api=$target/release/inproc-api floor=$target/release/floor

work=$(mktemp -d /tmp/iop.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
# Everything below runs in the private namespace: its mounts end with it.
unshare -m --propagation private bash -euo pipefail -s "$work" "$cycles" "$api" "$floor" "$tool" "$out" <<'EOF'
work=$1 cycles=$2 api=$3 floor=$4 tool=$5 out=$6
mkdir -p "$work/r" "$work/m" "$work/up" "$work/wk"
mount -t tmpfs -o mode=0700 profile-state "$work/r"
layers=() rels=()
for i in $(seq 1 50); do
    mkdir -p "$work/snapshots/$i/fs"
    echo "$i" >"$work/snapshots/$i/fs/file-$i"
    layers+=("$work/snapshots/$i/fs") rels+=("$i/fs")
done
export IDMAP_OVERLAY_STATE_DIR=$work/r/s
api_argv=("$api" 5 "$cycles" detached "$work/m" "$work/up" "$work/wk" 0:100000:65536 "${layers[@]}")
floor_argv=("$floor" cycles 5 "$cycles" "$work/m" "$work/snapshots" "$work/up" "$work/wk" "0 100000 65536" "${rels[@]}")
perf record -q -e cpu-clock -F 10000 --call-graph dwarf,32768 -o "$out/perf.api.data" \
    "${api_argv[@]}" >/dev/null
strace -f -c -o "$out/strace.api.txt" "${api_argv[@]}" >/dev/null
strace -f -c -o "$out/strace.floor.txt" "${floor_argv[@]}" >/dev/null
TIMEFORMAT="user %U s, system %S s, wall %R s ($cycles cycles + 5 warm-up)"
{ time "${api_argv[@]}" >/dev/null; } 2>"$out/cpu.api.txt"
{ time "${floor_argv[@]}" >/dev/null; } 2>"$out/cpu.floor.txt"
lower=$(IFS=:; echo "${layers[*]}")
pairs() {
    for _ in $(seq 1 $((cycles / 2))); do
        "$tool" mount --lowerdir "$lower" --upperdir "$work/up" --workdir "$work/wk" \
            --uidmap 0:100000:65536 --strategy detached "$work/m" >/dev/null
        "$tool" umount "$work/m"
    done
}
export -f pairs
export work cycles tool lower
perf record -q -e cpu-clock -F 10000 --call-graph dwarf,16384 -o "$out/perf.tool.data" \
    bash -c pairs
EOF
perf report -i "$out/perf.api.data" --children --sort sym --stdio -g none --percent-limit 1 \
    2>/dev/null | grep -v '^#' | grep -v '\[k\]' | grep . >"$out/api-children.txt"
perf report -i "$out/perf.tool.data" --comm idmap-overlay --children --sort sym --stdio -g none \
    --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '\[k\]' | grep . >"$out/tool-children.txt"
echo "profile: results in $out" >&2
cat "$out"/cpu.api.txt "$out"/cpu.floor.txt >&2
