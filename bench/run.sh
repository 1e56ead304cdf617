#!/usr/bin/env bash
# The idmap-overlay benchmark, in one command:
#
#   sudo bench/run.sh            full run (under 15 minutes on 2 cores): writes
#                                docs/BENCHMARKS.md and docs/bench.svg
#   sudo bench/run.sh --quick    smoke run (about a minute): writes
#                                bench/out/quick/BENCHMARKS.md and bench.svg
#
# Options:
#   --out DIR     write BENCHMARKS.md and bench.svg to DIR instead
#   --runs N      measured cycles per latency cell (default 60; --quick 5)
#   --rev REV     benchmark the tool as committed at REV (built from
#                 `git archive` in bench/out/, untouched by uncommitted work)
#   --tool PATH   benchmark this idmap-overlay binary, build nothing for it
#   --raw FILE    also write the raw measurements as JSON (a full run that
#                 writes docs/ keeps them in bench/results.json)
#
# It builds the tool (cargo build --release) and the raw-syscall floor in
# bench/floor, makes its own temporary directory under /tmp, and runs
# bench/bench.py inside a private mount namespace (unshare -m --propagation
# private) with its own state directory: nothing it mounts is ever visible in
# the host's mount table, and it never touches /run/idmap-overlay.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
quick=0 out="" runs="" rev="" tool="" raw=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out) out=$2; shift ;;
        --runs) runs=$2; shift ;;
        --rev) rev=$2; shift ;;
        --tool) tool=$2; shift ;;
        --raw) raw=$2; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || { echo "bench: must run as root: it mounts (in its own namespace)" >&2; exit 1; }
need=()
for c in unshare mount strace python3; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq util-linux mount strace python3 >/dev/null
fi

if [ -z "$out" ]; then
    if [ $quick = 1 ]; then
        out=$here/out/quick
    else
        out=$repo/docs
        # The measurements behind docs/BENCHMARKS.md, to check or re-render it
        # (python3 -c 'import report; report.write(...)' from bench/).
        [ -n "$raw" ] || raw=$here/results.json
    fi
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The tool.
if [ -n "$rev" ]; then
    commit=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
    # Always the same directory, files with fresh mtimes: cargo then rebuilds
    # the crate (its dependencies stay cached in bench/out/target-rev).
    src=$here/out/rev-src
    rm -rf --one-file-system "$src"
    mkdir -p "$src"
    git -C "$repo" archive "$commit" | tar -x -m -C "$src"
    echo "bench: building idmap-overlay at ${commit:0:12}" >&2
    CARGO_TARGET_DIR=$here/out/target-rev cargo build --release --locked --quiet \
        --manifest-path "$src/Cargo.toml"
    tool=$here/out/target-rev/release/idmap-overlay
    desc="commit ${commit:0:12}"
    src_dir=$src
elif [ -z "$tool" ]; then
    echo "bench: building idmap-overlay (working tree)" >&2
    (cd "$repo" && cargo build --release --quiet)
    tool=$repo/target/release/idmap-overlay
    src_dir=$repo
    desc="working tree at $(git -C "$repo" rev-parse --short=12 HEAD)"
    if [ -n "$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        desc="$desc with uncommitted changes in src/"
    fi
else
    tool=$(realpath "$tool")
    desc="binary $tool"
fi
desc="$desc ($("$tool" --version 2>/dev/null || echo '?'), release build)"

echo "bench: building the floor" >&2
cargo build --release --quiet --manifest-path "$here/floor/Cargo.toml"
floor=$here/floor/target/release/floor
kit=$here/floor/target/release/benchkit

# What a static, LTO build would buy (process start is most of a cycle):
# the same sources built with +crt-static, LTO and one codegen unit, set
# from here (the tool's Cargo.toml is not changed). Not in --quick.
variants=()
if [ $quick = 0 ] && [ -n "${src_dir:-}" ]; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    echo "bench: building static + LTO variants of the tool and the floor" >&2
    export_static() {
        CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
        RUSTFLAGS="-C target-feature=+crt-static" "$@"
    }
    export_static env CARGO_TARGET_DIR="$here/out/target-static" \
        cargo build --release --quiet --target "$host" --manifest-path "$src_dir/Cargo.toml"
    export_static env CARGO_TARGET_DIR="$here/out/floor-static" \
        cargo build --release --quiet --target "$host" --manifest-path "$here/floor/Cargo.toml"
    variants=(--tool-static "$here/out/target-static/$host/release/idmap-overlay"
              --floor-static "$here/out/floor-static/$host/release/floor")
fi

work=$(mktemp -d /tmp/iob.XXXXXX)
cleanup() {
    # The namespace is gone with its last process, and every mount with it.
    # Delete the directory only if nothing is mounted below it here.
    if grep -q " $work[/ ]" /proc/self/mountinfo; then
        echo "bench: something is mounted below $work in this namespace; not deleting it" >&2
        return
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

args=(--work "$work" --tool "$tool" --floor "$floor" --benchkit "$kit"
      --md "$out/BENCHMARKS.md" --svg "$out/bench.svg" --tool-desc "$desc"
      --host-ns "$(readlink /proc/self/ns/mnt)")
[ $quick = 1 ] && args+=(--quick)
[ -n "$runs" ] && args+=(--runs "$runs")
[ -n "$raw" ] && args+=(--raw "$raw")
args+=("${variants[@]}")
unshare -m --propagation private python3 "$here/bench.py" "${args[@]}"
