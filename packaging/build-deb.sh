#!/usr/bin/env bash
# Builds target/debian/ganesha-ctdb_<version>_<arch>.deb from a release build, with
# dpkg-deb (no packaging tool beyond dpkg). Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
cargo build --release --quiet --lib --bins

stage=target/debian/stage
rm -rf "$stage"
lib=$stage/usr/lib/ganesha-ctdb
install -D -m 0644 target/release/libganesha_ctdb_recov.so "$lib/libganesha_ctdb_recov.so"
# The only name Ganesha loads an external recovery backend by.
ln -s libganesha_ctdb_recov.so "$lib/libganesha_rados_recov.so"
install -D -m 0755 target/release/ganesha-ctdb "$stage/usr/sbin/ganesha-ctdb"
strip --strip-unneeded "$lib/libganesha_ctdb_recov.so" "$stage/usr/sbin/ganesha-ctdb"
# Shipped like Debian's own ctdb scripts: executable in /usr/share, enabled by the
# operator's `ctdb event script enable legacy 60.ganesha-ctdb` (a symlink in /etc/ctdb).
install -D -m 0755 ganesha-conf/events/60.ganesha-ctdb.script \
	"$stage/usr/share/ctdb/events/legacy/60.ganesha-ctdb.script"
install -D -m 0755 ganesha-conf/statd-callout "$stage/usr/libexec/ganesha-ctdb/statd-callout"
install -D -m 0644 packaging/systemd/ganesha-ctdb.conf \
	"$stage/usr/lib/systemd/system/nfs-ganesha.service.d/ganesha-ctdb.conf"
doc=$stage/usr/share/doc/ganesha-ctdb
install -D -m 0644 ganesha-conf/ganesha.conf "$doc/examples/ganesha.conf"
# Disabled until the operator copies it to /etc/nfs.conf.d (a single node needs no callout).
install -D -m 0644 ganesha-conf/nfs.conf.d/ganesha-ctdb.conf "$doc/examples/nfs.conf.d/ganesha-ctdb.conf"
install -D -m 0644 README.md "$doc/README.md"
for d in operations configuration architecture grace-hazard; do
	install -D -m 0644 "docs/$d.md" "$doc/$d.md"
done
printf 'ganesha-ctdb\n\nLicense: GPL-3.0-or-later\nOn Debian systems the license is in /usr/share/common-licenses/GPL-3.\n' >"$doc/copyright"
for page in man/ganesha-ctdb.8 man/ganesha-ctdb.conf.5; do
	section=${page##*.}
	name=$(basename "$page")
	mkdir -p "$stage/usr/share/man/man$section"
	sed "s/@VERSION@/$version/" "packaging/$page" | gzip -9n >"$stage/usr/share/man/man$section/$name.gz"
done

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
# The newest glibc symbol version the binaries use (what dpkg-shlibdeps would compute).
glibc=$(objdump -T "$lib/libganesha_ctdb_recov.so" "$stage/usr/sbin/ganesha-ctdb" |
	grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@GLIBC@/$glibc/" \
	packaging/debian/control >"$stage/DEBIAN/control"
install -m 0755 packaging/debian/postinst packaging/debian/postrm "$stage/DEBIAN/"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

deb=target/debian/ganesha-ctdb_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
