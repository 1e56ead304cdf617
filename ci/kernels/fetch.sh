#!/usr/bin/env bash
# Fetches one Debian kernel package into the cache and unpacks it there,
# with a private apt configuration (its own sources list, state and cache
# under the cache directory): the machine's own apt setup is only read,
# for the archive addresses, never changed.
#
#   fetch.sh CACHE SUITE PACKAGE-PATTERN   -> prints the unpacked root
#
# PACKAGE-PATTERN is a regex over package names (the newest version of the
# newest matching package is taken), e.g. '^linux-image-6\.1\.[0-9-]+-cloud-amd64-unsigned$'.
set -euo pipefail
cache=$1 suite=$2 pattern=$3
apt=$cache/apt
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "kernels: $keyring missing (install debian-archive-keyring)" >&2; exit 1; }

# The archive addresses, from the machine's own sources: the one serving a
# release (no "-security" suite) and the one serving "-security".
sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        case "$f" in
        *.sources)
            awk 'BEGIN{IGNORECASE=1}
                 /^[[:space:]]*$/ { if (u != "") print u, s; u=""; s=""; next }
                 /^URIs:/ { u=$2 } /^Suites:/ { $1=""; s=$0 }
                 END { if (u != "") print u, s }' "$f" ;;
        *) awk '$1 == "deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f" ;;
        esac
    done
}
debian=$(sources | awk '$0 ~ / (bookworm|bullseye|trixie|forky|sid)([ -]|$)/ && $0 !~ /-security/ {print $1; exit}')
security=$(sources | awk '$0 ~ /-security/ {print $1; exit}')
[ -n "$debian" ] && [ -n "$security" ] || {
    echo "kernels: no Debian archive (and security archive) in /etc/apt sources" >&2; exit 1; }

mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" "$cache/debs"
: > "$apt/status"
list=$apt/etc/sources.list
{
    echo "deb [signed-by=$keyring] ${debian%/} bookworm main"
    echo "deb [signed-by=$keyring] ${debian%/} bookworm-backports main"
    echo "deb [signed-by=$keyring] ${debian%/} trixie-backports main"
    echo "deb [signed-by=$keyring] ${security%/} bullseye-security main"
} > "$list.new"
opts=(-o "Dir::Etc::SourceList=$list" -o "Dir::Etc::SourceParts=-" -o "Dir::Etc::Parts=$apt/etc/apt.conf.d"
      -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d" -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists"
      -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache" -o "APT::Architecture=amd64"
      -o "APT::Architectures::=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
# Update the lists once a day (and whenever the sources change).
if ! cmp -s "$list.new" "$list" || [ -z "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    mv "$list.new" "$list"
    apt-get "${opts[@]}" -qq update >&2
else
    rm "$list.new"
fi
# The newest package and version of the suite whose .deb the archive has
# (a mirror may list a version it no longer serves).
found=
for pkg in $(apt-cache "${opts[@]}" pkgnames linux-image- | grep -E "$pattern" | sort -rV); do
    for ver in $(apt-cache "${opts[@]}" madison "$pkg" | awk -v s="$suite" '$0 ~ " "s"/" {print $3}' | sort -rV); do
        file="${pkg}_${ver//:/%3a}_amd64.deb"
        # A version the archive did not serve is remembered for a day.
        if [ -n "$(find "$cache/debs/$file.unserved" -mmin -1440 2>/dev/null)" ]; then continue; fi
        if [ -e "$cache/debs/$file" ] || (cd "$cache/debs" && apt-get "${opts[@]}" -qq download "$pkg=$ver" 2>/dev/null); then
            found=$file
            break 2
        fi
        touch "$cache/debs/$file.unserved"
        echo "kernels: $pkg $ver is listed but not served; trying an older one" >&2
    done
done
[ -n "$found" ] || { echo "kernels: no package matching $pattern could be fetched from $suite" >&2; exit 1; }
root=$cache/root/${found%_amd64.deb}
if [ ! -e "$root/.done" ]; then
    rm -rf "$root"
    mkdir -p "$root"
    dpkg-deb -x "$cache/debs/$found" "$root"
    # Newer kernels split the image: the kernel and its modules are
    # packages of the same version the image package depends on.
    for part in $(dpkg-deb -f "$cache/debs/$found" Depends | tr ',|' '\n\n' | awk '{print $1}' | grep -E '^linux-(binary|modules)-' || true); do
        file="${part}_${ver//:/%3a}_amd64.deb"
        [ -e "$cache/debs/$file" ] || (cd "$cache/debs" && apt-get "${opts[@]}" -qq download "$part=$ver" >&2)
        dpkg-deb -x "$cache/debs/$file" "$root"
    done
    # Packages of merged-/usr releases ship /usr/lib/modules only.
    [ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
    kver=$(ls "$root/lib/modules")
    depmod -b "$root" "$kver"
    touch "$root/.done"
fi
echo "$root"
