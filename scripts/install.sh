#!/usr/bin/env bash
# Installs idmap-overlay where a distribution would put it, or removes it.
#
#   scripts/install.sh [install|uninstall|build]
#
# `build` only builds the binary that `install` installs and prints its path.
# That binary is linked statically (glibc's +crt-static, set through RUSTFLAGS
# with an explicit --target, so build scripts and proc-macros stay dynamic):
# a static binary skips the dynamic loader's relocations, a large share of a
# short command's time. If the static build fails, the script says so and
# builds a dynamically linked one.
#
# Honours (the usual names of make install):
#   DESTDIR   staging root, prepended to every path (packaging); default none
#   PREFIX    default /usr/local; a distribution package uses /usr
#   SBINDIR   default $PREFIX/sbin              the binary
#   HELPERDIR default $SBINDIR                  mount.idmap-overlay, a symlink
#             to the binary (relative when in $SBINDIR)
#   MANDIR    default $PREFIX/share/man         man8/*.8
#   BASHCOMPDIR, ZSHCOMPDIR, FISHCOMPDIR        completions, defaults under
#             $PREFIX/share (bash-completion, zsh/site-functions,
#             fish/vendor_completions.d)
#   UNITDIR   default $PREFIX/lib/systemd/system   the gc service and timer
#   BINARY    the binary to install; default: the one `build` makes
#   STATIC    0 builds a dynamically linked binary (target/release/); default 1
#             (target/<host triple>/release/)
#   CARGO_TARGET_DIR  where cargo builds; default target/ in the source tree
#
# Every default path lies under $DESTDIR$PREFIX; only a directory given
# explicitly (SBINDIR, HELPERDIR, ...) may lie elsewhere.
#
# mount(8) looks for helpers in /sbin, /sbin/fs.d and /sbin/fs only. With
# PREFIX=/usr on a merged-/usr system (/sbin -> usr/sbin) that is $SBINDIR,
# so `mount -t idmap-overlay` works as installed. With another prefix
# (/usr/local), give HELPERDIR=/sbin to make the helper visible to mount(8)
# (the link then points at $SBINDIR/idmap-overlay), and the same HELPERDIR to
# uninstall:
#   sudo HELPERDIR=/sbin scripts/install.sh
#   sudo HELPERDIR=/sbin scripts/install.sh uninstall
#
# The gc units are installed with ExecStart pointing at $SBINDIR, and are not
# enabled: `systemctl enable --now idmap-overlay-gc.timer` does that.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-install}

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
HELPERDIR=${HELPERDIR:-$SBINDIR}
MANDIR=${MANDIR:-$PREFIX/share/man}
BASHCOMPDIR=${BASHCOMPDIR:-$PREFIX/share/bash-completion/completions}
ZSHCOMPDIR=${ZSHCOMPDIR:-$PREFIX/share/zsh/site-functions}
FISHCOMPDIR=${FISHCOMPDIR:-$PREFIX/share/fish/vendor_completions.d}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}

bin="$SBINDIR/idmap-overlay"
helper="$HELPERDIR/mount.idmap-overlay"
units=(idmap-overlay-gc.service idmap-overlay-gc.timer)

# Every installed path (without DESTDIR), for uninstall.
installed() {
    echo "$bin"
    echo "$helper"
    for page in "$root"/man/*.8; do
        echo "$MANDIR/man8/$(basename "$page")"
    done
    echo "$BASHCOMPDIR/idmap-overlay"
    echo "$ZSHCOMPDIR/_idmap-overlay"
    echo "$FISHCOMPDIR/idmap-overlay.fish"
    for unit in "${units[@]}"; do
        echo "$UNITDIR/$unit"
    done
}

say() { echo "$action: $*"; }

# Builds the binary (cargo's output on stderr) and prints its path.
build() {
    local target_dir=${CARGO_TARGET_DIR:-$root/target} host
    if [ "${STATIC:-1}" != 0 ]; then
        host=$(rustc -vV | sed -n 's/^host: //p')
        if (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
                cargo build --release --locked --target "$host" >&2) &&
            "$target_dir/$host/release/idmap-overlay" --version >/dev/null; then
            echo "$target_dir/$host/release/idmap-overlay"
            return
        fi
        echo "$action: the static build failed; building a dynamically linked binary (STATIC=0 skips the attempt)" >&2
    fi
    (cd "$root" && cargo build --release --locked >&2)
    echo "$target_dir/release/idmap-overlay"
}

case "$action" in
install)
    [ -n "${BINARY:-}" ] || BINARY=$(build)
    [ -x "$BINARY" ] || { echo "install: $BINARY is not an executable" >&2; exit 1; }

    install -D -m 0755 "$BINARY" "$DESTDIR$bin"
    say "$bin"
    # The helper is the same binary under another name (dispatched on argv[0]).
    # Relative when both are in one directory, so the link survives DESTDIR.
    mkdir -p "$DESTDIR$HELPERDIR"
    if [ "$HELPERDIR" = "$SBINDIR" ]; then
        ln -sfn idmap-overlay "$DESTDIR$helper"
    else
        ln -sfn "$bin" "$DESTDIR$helper"
    fi
    say "$helper -> $(readlink "$DESTDIR$helper")"
    for page in "$root"/man/*.8; do
        install -D -m 0644 "$page" "$DESTDIR$MANDIR/man8/$(basename "$page")"
    done
    say "$MANDIR/man8/*idmap-overlay*.8"
    install -D -m 0644 "$root/completions/idmap-overlay.bash" "$DESTDIR$BASHCOMPDIR/idmap-overlay"
    install -D -m 0644 "$root/completions/_idmap-overlay" "$DESTDIR$ZSHCOMPDIR/_idmap-overlay"
    install -D -m 0644 "$root/completions/idmap-overlay.fish" "$DESTDIR$FISHCOMPDIR/idmap-overlay.fish"
    say "completions for bash, zsh, fish"
    for unit in "${units[@]}"; do
        mkdir -p "$DESTDIR$UNITDIR"
        sed "s|/usr/sbin/idmap-overlay|$bin|g" "$root/contrib/systemd/$unit" >"$DESTDIR$UNITDIR/$unit"
        chmod 0644 "$DESTDIR$UNITDIR/$unit"
        say "$UNITDIR/$unit"
    done
    ;;
uninstall)
    # Files only: the directories are shared with other packages.
    while read -r path; do
        if [ -e "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ]; then
            rm -f "$DESTDIR$path"
            say "$path"
        fi
    done < <(installed)
    ;;
build)
    build
    ;;
*)
    echo "usage: $0 [install|uninstall|build]" >&2
    exit 1
    ;;
esac
