#!/usr/bin/env bash
# The tool on the kernels container hosts run: Debian's 5.10, 6.1, 6.12 and
# 7.x, each booted in QEMU with a small initramfs that runs the checks of
# ci/kernels/init (every strategy mount + umount with uid 100000 seen through
# the overlay, tmpfs layers, inspect, gc, kill -9 + gc for every strategy,
# somebody else's overlay forged to look like ours). Prints one table, check
# by kernel, writes it to docs/KERNELS.md, and exits 1 on any result other
# than the expected one (a kernel lacking a feature is expected to get the
# clear refusal, exit 32).
#
# Downloads are cached in $IDMAP_OVERLAY_KERNEL_CACHE (default
# ~/.cache/idmap-overlay-kernels); a rerun fetches nothing new. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "kernels: must run as root (depmod, loop images, the suite)" >&2; exit 1; }
cache=${IDMAP_OVERLAY_KERNEL_CACHE:-$HOME/.cache/idmap-overlay-kernels}
mkdir -p "$cache"
start=$(date +%s)
# --no-suite: the checks only, not the test suite (for a quick local run;
# the table then says not-run, and .ci/run never passes it).
run_suite=yes
[ "${1:-}" = --no-suite ] && run_suite=no

# Tools this script runs (command, then the Debian package), installed
# like .ci/run installs the tests' tools.
need=(qemu-system-x86_64:qemu-system-x86 depmod:kmod modprobe:kmod mkfs.ext4:e2fsprogs
      xz:xz-utils zstd:zstd gzip:gzip dpkg-deb:dpkg timeout:coreutils)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(keyring-missing:debian-archive-keyring)
# A static busybox for the initramfs.
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static-missing:busybox-static)
missing=()
for pair in "${need[@]}"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ! command -v file >/dev/null; then missing+=(file); fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "kernels: installing ${missing[*]}"
    had_qemu_img=$(command -v qemu-img || true)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # A qemu-utils from elsewhere (a backport) conflicts with the archive's
    # qemu-system-x86, and apt removes it: put the archive's back, so the
    # machine keeps its qemu-img.
    if [ -n "$had_qemu_img" ] && ! command -v qemu-img >/dev/null; then
        echo "kernels: reinstalling qemu-utils (removed by the qemu-system-x86 install)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
    fi
fi

# name  suite  package pattern (the newest the archive serves is taken)
kernels=(
    "5.10 bullseye-security ^linux-image-5\.10\.[0-9.-]+-cloud-amd64-unsigned$"
    "6.1 bookworm ^linux-image-6\.1\.[0-9.-]+-cloud-amd64-unsigned$"
    "6.12 bookworm-backports ^linux-image-6\.12\.[0-9.]+\+deb12-cloud-amd64-unsigned$"
    "7.x trixie-backports ^linux-image-7\.[0-9.]+\+deb13-cloud-amd64(-unsigned)?$"
)

# What each kernel must give, check by check: a kernel without a feature
# must refuse it clearly (exit 32) and leave nothing behind.
expected() {
    local k=$1 c=$2
    case "$k:$c" in
    *:kernel) echo any ;;
    *:inspect | *:gc) echo exit-0 ;;
    6.1:suite | 7.x:suite) [ "$run_suite" = yes ] && echo passed || echo not-run ;;
    *:suite) echo not-run ;;
    *:leftovers) echo mounts-0,records-0 ;;
    5.10:feature:*) echo false ;;
    5.10:crash:*) echo exit-32,gc-0,clean ;;
    5.10:*) echo exit-32 ;;
    6.1:feature:idmapped_mounts) echo true ;;
    6.1:feature:*) echo false ;;
    6.1:auto) echo ok:common-dir ;;
    6.1:detached | 6.1:tmpfs-layers | 6.1:idmapped-upper:detached) echo exit-32 ;;
    6.12:feature:idmapped_mounts | 6.12:feature:idmapped_tmpfs | 6.12:feature:unique_mount_ids) echo true ;;
    6.12:feature:*) echo false ;;
    6.12:auto) echo ok:common-dir ;;
    6.12:detached | 6.12:idmapped-upper:detached) echo exit-32 ;;
    6.1:crash:detached | 6.12:crash:detached) echo exit-32,gc-0,clean ;;
    7.x:feature:*) echo true ;;
    7.x:auto) echo ok:detached ;;
    *:crash:*) echo killed,gc-0,clean ;;
    *:forged) echo left-alone,umount-32,gc-0 ;;
    *) echo ok ;;
    esac
}

checks=(kernel feature:idmapped_mounts feature:detached feature:idmapped_tmpfs feature:unique_mount_ids
        feature:statmount_idmaps auto detached common-dir per-layer tmpfs-layers
        idmapped-upper:detached idmapped-upper:common-dir inspect gc
        crash:detached crash:common-dir crash:per-layer forged leftovers suite)

echo "kernels: building the static tool (with test points)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --release --quiet --features testpoints \
    --target x86_64-unknown-linux-gnu
tool=target/x86_64-unknown-linux-gnu/release/idmap-overlay
out=target/kernels
mkdir -p "$out"

# The ext4 image the checks mount (loop) for layers and state.
rm -f "$out/disk.ext4"
truncate -s 48M "$out/disk.ext4"
mkfs.ext4 -q -F "$out/disk.ext4"

declare -A got notes packages seconds
failed=0
for spec in "${kernels[@]}"; do
    read -r name suite pattern <<<"$spec"
    root=$(ci/kernels/fetch.sh "$cache" "$suite" "$pattern")
    packages[$name]=$(basename "$root")
    vmlinuz=$(find "$root/" -name 'vmlinuz*' -type f | head -1)
    ci/kernels/initramfs.sh "$root" "$out/$name.cpio.gz" ci/kernels/init "overlay loop ext4" "$tool" "$out/disk.ext4"
    t0=$(date +%s.%N)
    ci/kernels/boot.sh "$vmlinuz" "$out/$name.cpio.gz" 300 > "$out/$name.console" 2>&1 || true
    seconds[$name]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    tr -d '\r' < "$out/$name.console" | sed -n '/BEGIN-RESULTS$/,/^END-RESULTS$/p' > "$out/$name.results"
    echo "kernels: $name (${packages[$name]}) booted and checked in ${seconds[$name]} s"
    while read -r tag check value; do
        case "$tag" in
        RESULT) got[$name:$check]=$value ;;
        NOTE) notes[$name:$check]=$value ;;
        esac
    done < "$out/$name.results"
done

# The whole privileged suite (tests/cli) under 6.1 and 7.x: Debian's
# generic kernels (the cloud ones have no 9p), the host's root shared
# read-only, an ext4 disk as TMPDIR (ci/kernels/suite.sh).
suite_kernels=(
    "6.1 bookworm ^linux-image-6\.1\.[0-9.-]+-amd64-unsigned$"
    "7.x trixie-backports ^linux-image-7\.[0-9.]+\+deb13-amd64(-unsigned)?$"
)
# Tests whose subject is no kernel's: ids made together, argument checks,
# the table's layout, the metrics file's atomic replacement, hostile files
# in the state directory, ten thousand records. The host runs them (.ci/run
# fails if any did not run there); under emulation each takes minutes, so
# the booted kernels skip them, by name (docs/KERNELS.md lists them).
host_only=(
    admin::ids_made_together_differ_in_their_first_six_characters
    admin::the_table_fits_a_terminal_and_every_id_is_accepted_back
    bad_input::bad_inputs_are_refused_without_side_effects
    hostile::fifos_and_symlinks_at_every_state_file_name_never_hang
    metrics::the_metrics_file_is_never_seen_half_written
    scale::ten_thousand_records_under_256_file_descriptors
    table::a_busy_host_fits_every_width_and_tells_overlays_apart
)
if [ "$run_suite" = yes ]; then
    echo "kernels: building the test suite"
    binary=$(cargo test --locked --test cli --no-run --message-format=json 2>/dev/null |
        grep '"name":"cli"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1)
    [ -n "$binary" ] || { echo "kernels: could not build the test suite" >&2; exit 1; }
    # Every test but the host-only ones must pass: each of those must
    # exist (a renamed one would be skipped no more, silently).
    all_tests=$("$binary" --list 2>/dev/null | sed -n 's/: test$//p')
    skips=()
    for name in "${host_only[@]}"; do
        grep -qxF "$name" <<<"$all_tests" || { echo "kernels: no test $name (host_only)" >&2; exit 1; }
        skips+=(--skip "$name")
    done
    want_passed=$(( $(wc -l <<<"$all_tests") - ${#host_only[@]} ))
    # Both suites at once: under emulation much of a test's time is waiting
    # (timeouts, sleeps, a watcher), which the other machine fills.
    declare -A roots pids
    t0=$(date +%s)
    for spec in "${suite_kernels[@]}"; do
        read -r name suite pattern <<<"$spec"
        roots[$name]=$(ci/kernels/fetch.sh "$cache" "$suite" "$pattern")
        ci/kernels/suite.sh "${roots[$name]}" "$binary" "$out/suite-$name" 1500 "${skips[@]}" \
            > "$out/suite-$name.summary" & pids[$name]=$!
    done
    for spec in "${suite_kernels[@]}"; do
        read -r name _ <<<"$spec"
        root=${roots[$name]}
        code=0
        wait "${pids[$name]}" || code=$?
        console=$(tr -d '\r' < "$out/suite-$name.console")
        summary=$(grep -m1 '^test result:' <<<"$console" || true)
        passed=$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$summary")
        failed_n=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$summary")
        ignored=$(sed -n 's/.* \([0-9]*\) ignored.*/\1/p' <<<"$summary")
        if [ "$code" = 0 ] && [ "${failed_n:-x}" = 0 ] && [ "${ignored:-x}" = 0 ] && [ "${passed:-0}" = "$want_passed" ]; then
            got[$name:suite]="${passed}-passed"
        else
            got[$name:suite]="FAILED:${passed:-?}-passed,${failed_n:-?}-failed"
            grep -E '^test .* FAILED$' <<<"$console" | sed "s/^/kernels: $name: /" >&2 || true
            # What each failed test said (the suite's first "failures:"
            # section), so that a failure in CI can be read from its log.
            awk '/^failures:$/ { n++; next } n == 1' <<<"$console" | head -60 |
                sed "s/^/kernels: $name: | /" >&2 || true
        fi
        notes[$name:suite]=$(grep -m1 '^cli: kernel' <<<"$console" || true)
        seconds[$name:suite]=$(( $(date +%s) - t0 ))
        packages[$name:suite]=${root##*/}
        echo "kernels: suite under $name (${root##*/}): ${summary:-no result} (${seconds[$name:suite]} s, both suites running at once)"
    done
fi

# A check's result; the suite's is not-run where it does not run.
value() {
    case "$2" in
    suite) echo "${got[$1:$2]:-not-run}" ;;
    *) echo "${got[$1:$2]:-none}" ;;
    esac
}

# A refusal (exit 32) must say which kernel it needs.
unclear() {
    case "$(value "$1" "$2")" in
    exit-32*) ! grep -qE 'Linux [0-9]+\.[0-9]+|a kernel after [0-9]+\.[0-9]+' <<<"${notes[$1:$2]:-}" ;;
    *) false ;;
    esac
}

# The table: a cell is the result, or "✗ result (expected X)".
cell() {
    local k=$1 c=$2 v want
    v=$(value "$k" "$c")
    want=$(expected "$k" "$c")
    if unclear "$k" "$c"; then printf '✗ %s (the message names no kernel)' "$v"; return; fi
    if [ "$want" = any ] || [ "$v" = "$want" ] || [[ "$want" = passed && "$v" = *-passed && "$v" != FAILED* ]]; then printf '%s' "$v"
    else printf '✗ %s (expected %s)' "$v" "$want"; fi
}
escape() { sed 's/|/\\|/g; s/[`<>]/\\&/g' <<<"$1"; }
{
    printf '| check |'; for spec in "${kernels[@]}"; do printf ' %s |' "${spec%% *}"; done; echo
    printf '|---|'; for spec in "${kernels[@]}"; do printf -- '---|'; done; echo
    for c in "${checks[@]}"; do
        printf '| %s |' "$c"
        for spec in "${kernels[@]}"; do printf ' %s |' "$(escape "$(cell "${spec%% *}" "$c")")"; done
        echo
    done
} > "$out/table.md"
for spec in "${kernels[@]}"; do
    k=${spec%% *}
    for c in "${checks[@]}"; do
        case "$(cell "$k" "$c")" in ✗*) failed=1 ;; esac
    done
done

{
    cat <<'HEAD'
# Kernels

What the tool does on the kernels container hosts run, measured by
`ci/kernels.sh` (which regenerates this file): each of Debian's kernels
below boots in QEMU with a small initramfs whose `/init`
([ci/kernels/init](../ci/kernels/init)) runs the checks on an ext4 image
and reports. A check a kernel cannot pass is expected to be refused with
exit 32 and a message that names the kernel needed (below), leaving
nothing mounted and nothing recorded; a cell
marked ✗ is a result other than the expected one (and the script fails).

- `feature:*`: `idmap-overlay inspect --features --json` on that kernel.
- `auto`, `detached`, `common-dir`, `per-layer`: mount with the strategy
  (an upper dir, map 0:100000:65536), a file owned by 0 on disk must show
  as 100000:100000 through the overlay, a write must land in the upper dir,
  `inspect` and `umount` must succeed and leave nothing mounted;
  `auto` shows the strategy it picked.
- `tmpfs-layers`: the same (common-dir) with the layers on tmpfs.
- `idmapped-upper:*`: `mount --idmapped-upper` with that strategy; the container's root (a user
  namespace mapping 0 to 100000, entered with nsenter) writes a file, which must be stored on
  disk as 0:0, while host root must fail to create one through the overlay; then umount.
- `inspect`, `gc`: on a clean state directory.
- `crash:*`: the tool killed (SIGKILL) right after mounting the overlay,
  before recording it as mounted, then `gc`: nothing may be left.
- `forged`: our overlay replaced by somebody else's with our tag, and our
  record's mount id forged to the new mount's: `umount` and `gc` must leave
  it alone.
- `leftovers`: our mounts and records left at the end.
- `suite`: the privileged test suite (`tests/cli`) run under the
  kernel (Debian's generic kernel of the same version, sharing the host's
  root over 9p; layers on an ext4 disk), the number of tests passed; the
  suite asks the tool's probe which features the kernel has and tests a
  missing one for its refusal. Run under 6.1 and 7.x. Every test runs but
  the host-only ones below, whose subject is no kernel's and which take
  minutes each under emulation (the host runs them all); tests that repeat
  a race or a load make a quarter of their rounds there.

HEAD
    cat "$out/table.md"
    echo
    echo "Kernel packages (Debian, \`-cloud-amd64\`):"
    echo
    for spec in "${kernels[@]}"; do
        k=${spec%% *}
        read -r _ suite _ <<<"$spec"
        echo "- $k: \`$(escape "${packages[$k]}")\` from $suite"
    done
    echo
    for spec in "${suite_kernels[@]}"; do
        k=${spec%% *}
        [ -n "${packages[$k:suite]:-}" ] || continue
        echo "Suite under $k: \`$(escape "${packages[$k:suite]}")\`, which said: \`$(escape "${notes[$k:suite]:-nothing}")\`"
        echo
    done
    if [ "$run_suite" = yes ]; then
        echo "Host-only tests (run by \`.ci/run\` on the host, skipped under the booted kernels):"
        echo
        for name in "${host_only[@]}"; do echo "- \`$name\`"; done
        echo
    fi
    echo "The tool's messages where a check did not succeed:"
    echo
    for spec in "${kernels[@]}"; do
        k=${spec%% *}
        for c in "${checks[@]}"; do
            v=${got[$k:$c]:-}
            case "$v" in ok* | killed* | left-alone* | exit-0 | true | false | mounts-0* | *-passed | not-run) continue ;; esac
            n=${notes[$k:$c]:-}
            [ "$c" = kernel ] || [ -z "$n" ] || echo "- $k, $c: $(escape "$n")"
        done
    done
} > docs/KERNELS.md

cat "$out/table.md"
echo "kernels: whole run $(( $(date +%s) - start )) s"
if [ $failed != 0 ]; then
    echo "kernels: unexpected results (marked ✗ above); consoles in $out/" >&2
    exit 1
fi
echo "kernels: ok"
