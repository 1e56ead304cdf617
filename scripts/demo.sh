#!/usr/bin/env bash
# Builds idmap-overlay and shows its main job for real: a dozen layers owned
# by root, mounted as one overlay whose files appear owned by uid 100000,
# then unmounted. Runs in a private mount namespace with its own state
# directory, so nothing reaches the host's mount table or /run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${IDMAP_OVERLAY_DEMO_INSIDE:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "demo: run as root (it mounts)" >&2; exit 1; }
    cargo build --release --locked
    exec env IDMAP_OVERLAY_DEMO_INSIDE=1 unshare -m --propagation private -- "$0" "$@"
fi

bin=$PWD/target/release/idmap-overlay
work=$(mktemp -d /tmp/idmap-overlay-demo.XXXXXX)
# Never delete through a mount: remove the work dir only once nothing is mounted in it.
trap 'umount "$work/merged" 2>/dev/null || true; findmnt -rno TARGET | grep -q "^$work" || rm -rf "$work"' EXIT
export IDMAP_OVERLAY_STATE_DIR=$work/state
run() { printf '\n$ %s\n' "$*"; "$@"; }

layers=()
for i in $(seq 12 -1 1); do
    mkdir -p "$work/layers/$i/fs"
    echo "from layer $i" > "$work/layers/$i/fs/layer-$i.txt"
    echo "layer $i" > "$work/layers/$i/fs/top.txt"
    layers+=("$work/layers/$i/fs")
done
mkdir -p "$work/upper" "$work/work" "$work/merged"
lowerdir=$(IFS=:; echo "${layers[*]}")

echo "12 layers, every file owned by root on disk:"
run ls -ln "$work/layers/12/fs"
run "$bin" mount --lowerdir "$lowerdir" --upperdir "$work/upper" --workdir "$work/work" \
    --uidmap 0:100000:65536 "$work/merged"
echo
echo "Through the overlay the same files belong to uid/gid 100000:"
run ls -ln "$work/merged"
run cat "$work/merged/top.txt"
echo
echo "The mount table holds the overlay and nothing temporary:"
run grep -c idmapped /proc/self/mountinfo || true
run findmnt -no SOURCE,FSTYPE "$work/merged"
echo
echo "The record under the state directory:"
run cat "$IDMAP_OVERLAY_STATE_DIR"/mounts/*.json
run "$bin" umount "$work/merged"
run ls "$IDMAP_OVERLAY_STATE_DIR/mounts"
echo "demo: done, nothing left mounted"
