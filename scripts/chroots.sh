#!/usr/bin/env bash
# Builds (once) the Debian chroots the version matrix runs Ganesha in: trixie (Debian 13:
# nfs-ganesha 6.5, ctdb 4.22) and sid (nfs-ganesha 15.2). They are cached outside the
# clone (GANESHA_CTDB_CHROOTS, default /var/cache/ganesha-ctdb/chroots) so that a second
# run reuses them; a chroot whose stamp does not match the package list below is rebuilt.
# Usage: scripts/chroots.sh [suite...]   (default: trixie sid); prints nothing when warm.
set -euo pipefail

root=${GANESHA_CTDB_CHROOTS:-/var/cache/ganesha-ctdb/chroots}
mirror=${GANESHA_CTDB_MIRROR:-http://deb.debian.org/debian}

packages_for() {
  case "$1" in
    # ctdb and what its 10.interface needs (iproute2, ethtool, iptables), D-Bus for
    # Ganesha's admin interface, procps for ps in CTDB's scripts.
    trixie) echo "nfs-ganesha nfs-ganesha-vfs dbus ctdb iproute2 ethtool iptables procps" ;;
    sid) echo "nfs-ganesha nfs-ganesha-vfs dbus" ;;
    *) echo "chroots: unknown suite $1 (trixie or sid)" >&2; return 1 ;;
  esac
}

build() {
  local suite=$1 dir="$root/$1" pkgs stamp
  pkgs=$(packages_for "$suite")
  stamp="suite=$suite packages=$pkgs"
  if [[ -f $dir/.ganesha-ctdb-stamp && $(cat "$dir/.ganesha-ctdb-stamp") == "$stamp" ]]; then
    return 0
  fi
  if ! command -v debootstrap >/dev/null; then
    echo "chroots: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  echo "chroots: building $suite in $dir (once; a few minutes)"
  rm -rf "$dir.new"
  mkdir -p "$root"
  local start=$SECONDS
  debootstrap --variant=minbase "$suite" "$dir.new" "$mirror" >"$root/$suite.debootstrap.log" 2>&1 || {
    echo "chroots: debootstrap $suite failed; see $root/$suite.debootstrap.log" >&2
    tail -20 "$root/$suite.debootstrap.log" >&2
    return 1
  }
  # sid's Release file can be past its Valid-Until by this machine's clock.
  echo 'Acquire::Check-Valid-Until "false";' >"$dir.new/etc/apt/apt.conf.d/99ganesha-ctdb"
  # Services must not start inside the chroot at install time.
  printf '#!/bin/sh\nexit 101\n' >"$dir.new/usr/sbin/policy-rc.d"
  chmod +x "$dir.new/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  chroot "$dir.new" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $pkgs" >>"$root/$suite.debootstrap.log" 2>&1 || {
    echo "chroots: installing $pkgs into $suite failed; see $root/$suite.debootstrap.log" >&2
    tail -20 "$root/$suite.debootstrap.log" >&2
    return 1
  }
  ln -sf /proc/self/mounts "$dir.new/etc/mtab"
  echo "$stamp" >"$dir.new/.ganesha-ctdb-stamp"
  rm -rf "$dir"
  mv "$dir.new" "$dir"
  echo "chroots: $suite ready in $((SECONDS - start)) s"
}

suites=("$@")
((${#suites[@]})) || suites=(trixie sid)
for s in "${suites[@]}"; do
  build "$s"
done
