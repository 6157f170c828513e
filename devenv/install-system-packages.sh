#!/usr/bin/env bash
# Debian packages the project needs, installed only when missing: PostgreSQL 15 server binaries, and
# Prometheus, Alertmanager and the Pushgateway (their tools check the monitoring configuration; tests and
# `make monitoring-up` run them on loopback ports of their own), and for the docs site's browser tests
# Chromium (driven by Playwright, never downloaded) and Noto fonts (Urdu glyphs in pages and screenshots).
set -euo pipefail
need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql-15 postgresql-client-15)
fi
if ! command -v runuser >/dev/null 2>&1; then need+=(util-linux); fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then need+=(prometheus); fi
if ! command -v prometheus-alertmanager >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1; then
  need+=(prometheus-alertmanager)
fi
if ! command -v prometheus-pushgateway >/dev/null 2>&1; then need+=(prometheus-pushgateway); fi
if ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if ! dpkg-query -W -f='${Status}' fonts-noto-core 2>/dev/null | grep -q "ok installed"; then need+=(fonts-noto-core); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "==> installing Debian packages: ${need[*]}"
SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
# Debian's package starts its own cluster on 5432; ours runs on its own port, so stop the packaged one.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do $SUDO pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
fi
# The same for the monitoring packages: their services would hold 9090/9093/9091 with Debian's configuration.
for service in prometheus prometheus-alertmanager prometheus-pushgateway prometheus-node-exporter; do
  if [ -e "/etc/init.d/$service" ] || [ -e "/lib/systemd/system/$service.service" ]; then
    $SUDO service "$service" stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $SUDO systemctl disable "$service" >/dev/null 2>&1 || true
    else
      $SUDO update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  fi
done
