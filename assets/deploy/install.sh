#!/bin/sh
# Installs imgedge as a systemd service. Run as root from the repository root after
# `cargo build --release` (or give the binary's path as $1):
#   sh assets/deploy/install.sh && systemctl enable --now imgedge
# DESTDIR=/some/root installs the files into a scratch root instead of / (packaging, the
# test in tests/deploy.rs); the system user is always created on this host.
# Existing /etc/imgedge files are kept; nothing is started.
set -eu
bin=${1:-target/release/imgedge}
d=${DESTDIR:-}
here=$(dirname "$0")

getent group imgedge >/dev/null || groupadd --system imgedge
getent passwd imgedge >/dev/null || useradd --system --gid imgedge --no-create-home \
  --home-dir /var/lib/imgedge --shell /usr/sbin/nologin imgedge

install -D -m 755 "$bin" "$d/usr/local/bin/imgedge"
# The config is root's, readable by the service's group only (it may hold a purge token).
install -d -m 755 "$d/etc/imgedge"
[ -e "$d/etc/imgedge/imgedge.toml" ] || install -m 640 -g imgedge "$here/imgedge.toml" "$d/etc/imgedge/imgedge.toml"
# Secrets (IMGEDGE_PURGE_TOKEN, origin keys) as VAR=value lines; systemd reads it as root.
[ -e "$d/etc/imgedge/env" ] || install -m 600 /dev/null "$d/etc/imgedge/env"
# The originals of the default folder origin (change `origin` for OSS, S3 or HTTP).
install -d -m 755 "$d/srv/media"
# systemd creates these too (StateDirectory=, CacheDirectory=); made here for DESTDIR runs.
install -d -m 750 -o imgedge -g imgedge "$d/var/lib/imgedge" "$d/var/cache/imgedge"
install -D -m 644 "$here/imgedge.service" "$d/etc/systemd/system/imgedge.service"
if [ -z "$d" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "imgedge installed${d:+ into $d}; start it with: systemctl enable --now imgedge"
