#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and the demo need. Idempotent: it
# only calls apt-get when something is missing.
set -euo pipefail

packages=(
  nfs-ganesha nfs-ganesha-vfs   # the real ganesha.nfsd the end-to-end tests and demo run
  dbus                          # private system bus for Ganesha's admin interface
  iproute2                      # ip netns: each server runs in its own network namespace
  clang libclang-dev            # bindgen (build.rs) needs libclang
  gcc make                      # the C harness in tests/c
  valgrind                      # the C harness runs under valgrind
  ctdb                          # real ctdbd clusters in network namespaces (CTDB store, takeover)
  tdb-tools                     # tdbtool writes the TDB files the local TDB reader is tested on
  ethtool iptables              # ctdb's 10.interface needs them (ctdb only Recommends them)
  rpcbind nfs-common            # real rpcbind and rpc.statd for the NSM tests
  man-db binutils               # the package test: man ganesha-ctdb; strip for the .deb
  libnfs-utils                  # nfs-cat: an independent NFSv4.0 client in the e2e tests
  debootstrap                   # scripts/chroots.sh: Debian 13 and sid roots for the version matrix
)

missing=()
for p in "${packages[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
