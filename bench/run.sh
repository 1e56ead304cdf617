#!/usr/bin/env bash
# The idmap-overlay benchmark, in one command:
#
#   sudo bench/run.sh            full run (about a minute on 2 cores, plus the
#                                builds): writes
#                                docs/BENCHMARKS.md and docs/bench.svg
#   sudo bench/run.sh --quick    smoke run (seconds, plus the builds): writes
#                                bench/out/quick/BENCHMARKS.md and bench.svg
#   bench/run.sh --selftest      the harness's own tests (bench/test_bench.py):
#                                python3 and cc only, no root, seconds
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
# It builds the tool as README says to install it (scripts/install.sh build:
# static), the Rust floor in bench/floor, the C floor bench/cfloor/floor.c
# (cc -O2), the namespaces axis' complete-scan floor and namespace holder
# (bench/cfloor/nsscan.c, nsholder.c; cc -O2) and the in-process benchmark
# bench/inproc-api, makes its own temporary directory under /tmp, and runs
# bench/bench.py inside a private mount namespace (unshare -m --propagation
# private) with its own state directory: nothing it mounts is ever visible in
# the host's mount table, and it never touches /run/idmap-overlay.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
selftest=0 quick=0 out="" runs="" rev="" tool="" raw=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out) out=$2; shift ;;
        --runs) runs=$2; shift ;;
        --rev) rev=$2; shift ;;
        --tool) tool=$2; shift ;;
        --raw) raw=$2; shift ;;
        --selftest) selftest=1 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
    shift
done

# What is missing is said, not installed: the machine is the caller's.
require() {
    local need=() c
    for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
    if [ ${#need[@]} -gt 0 ]; then
        echo "bench: missing ${need[*]} (Debian: util-linux, mount, strace, python3, gcc, cargo)" >&2
        exit 1
    fi
}
cc=${CC:-cc}

if [ $selftest = 1 ]; then
    require python3 "$cc"
    cd "$here" && CC=$cc exec python3 -m unittest -v test_bench
fi

[ "$(id -u)" = 0 ] || { echo "bench: must run as root: it mounts (in its own namespace)" >&2; exit 1; }
require unshare mount strace python3 "$cc" cargo rustc

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
    if grep -q '^build)' "$src/scripts/install.sh"; then
        tool=$(CARGO_TARGET_DIR=$here/out/target-rev bash "$src/scripts/install.sh" build)
    else
        # Before install.sh could build on its own: the dynamic build it installed.
        CARGO_TARGET_DIR=$here/out/target-rev cargo build --release --locked --quiet \
            --manifest-path "$src/Cargo.toml"
        tool=$here/out/target-rev/release/idmap-overlay
    fi
    desc="commit ${commit:0:12}"
    src_dir=$src
elif [ -z "$tool" ]; then
    echo "bench: building idmap-overlay (working tree) with scripts/install.sh build" >&2
    tool=$(bash "$repo/scripts/install.sh" build)
    src_dir=$repo
    desc="working tree at $(git -C "$repo" rev-parse --short=12 HEAD)"
    if [ -n "$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        desc="$desc with uncommitted changes in src/"
    fi
else
    tool=$(realpath "$tool")
    desc="binary $tool"
fi
linking=dynamic
file -L "$tool" 2>/dev/null | grep -q 'static' && linking=static
desc="$desc ($("$tool" --version 2>/dev/null || echo '?'), release build, $linking)"

echo "bench: building the floors" >&2
cargo build --release --quiet --manifest-path "$here/floor/Cargo.toml"
floor=$here/floor/target/release/floor
kit=$here/floor/target/release/benchkit
mkdir -p "$here/out"
cfloor=$here/out/cfloor
"$cc" -O2 -Wall -o "$cfloor" "$here/cfloor/floor.c"
# The namespaces axis (issue 19): the complete-scan floor and the holder of
# the other mount namespaces.
"$cc" -O2 -Wall -o "$here/out/nsscan" "$here/cfloor/nsscan.c"
"$cc" -O2 -Wall -o "$here/out/nsholder" "$here/cfloor/nsholder.c"

# The library API in one process (working tree only: inproc-api depends on
# the crate by path).
inproc=()
if [ -z "$rev" ] && [ "$src_dir" = "$repo" ]; then
    echo "bench: building bench/inproc-api" >&2
    cargo build --release --quiet --manifest-path "$here/inproc-api/Cargo.toml"
    inproc=(--inproc-api "$here/inproc-api/target/release/inproc-api")
fi

# What linking buys (process start is most of a cycle): the tool built
# dynamically (STATIC=0, as cargo build --release makes it) and the Rust floor
# built static, beside the installed tool and the floors. Not in --quick.
variants=()
if [ $quick = 0 ] && [ -n "${src_dir:-}" ]; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    echo "bench: building the dynamic tool and the static Rust floor" >&2
    dyn_target=$repo/target
    [ -n "$rev" ] && dyn_target=$here/out/target-rev
    (cd "$src_dir" && CARGO_TARGET_DIR=$dyn_target cargo build --release --locked --quiet)
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$here/out/floor-static" \
        cargo build --release --quiet --target "$host" --manifest-path "$here/floor/Cargo.toml"
    variants=(--tool-dynamic "$dyn_target/release/idmap-overlay"
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

args=(--work "$work" --tool "$tool" --floor "$floor" --cfloor "$cfloor" --benchkit "$kit"
      --md "$out/BENCHMARKS.md" --svg "$out/bench.svg" --tool-desc "$desc"
      --host-ns "$(readlink /proc/self/ns/mnt)"
      --nsscan "$here/out/nsscan" --nsholder "$here/out/nsholder")
[ $quick = 1 ] && args+=(--quick)
[ -n "$runs" ] && args+=(--runs "$runs")
[ -n "$raw" ] && args+=(--raw "$raw")
args+=("${variants[@]}" "${inproc[@]}")
unshare -m --propagation private python3 "$here/bench.py" "${args[@]}"
