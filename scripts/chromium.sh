#!/usr/bin/env bash
# The browser for the MLflow UI's test: Debian's Chromium and its WebDriver, never a downloaded build.
#
#   scripts/chromium.sh   install them if missing (as root), then print the two paths, one a line
#
# Selenium is pointed at these paths, so it never fetches a driver or a browser of its own.
set -euo pipefail

die() { echo "chromium.sh: $*" >&2; exit 2; }

browser=/usr/bin/chromium
driver=/usr/bin/chromedriver

if [[ ! -x $browser || ! -x $driver ]]; then
  [[ $(id -u) -eq 0 ]] || die "Chromium is not installed; run as root once, or: sudo apt-get install chromium chromium-driver"
  echo "chromium.sh: installing Debian's chromium and chromium-driver packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
  [[ -x $browser && -x $driver ]] || die "apt-get installed chromium but $browser or $driver is still missing"
fi
echo "$browser"
echo "$driver"
