#!/usr/bin/env bash
# Installs Debian's chromium for the page tests (test/http/*.browser.test.ts drive it with
# playwright-core; playwright's own browser download is not used). Idempotent: does nothing when
# /usr/bin/chromium is already there. Needs root (or sudo) only when it has to install.
set -euo pipefail

# Outside CI a machine where chromium cannot be installed still runs every other test: the page
# tests then say they were skipped and why. In CI (CI=true) a missing browser is an error.
cannot_install() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "install-browser: $1" >&2
    exit 1
  fi
  echo "install-browser: warning: $1; the page tests will be skipped" >&2
  exit 0
}

CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}

if [[ -x "$CHROMIUM" ]]; then
  echo "install-browser: $CHROMIUM already installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')); nothing to do"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  cannot_install "$CHROMIUM is missing and apt-get is not available; install chromium with this system's package manager"
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    cannot_install "$CHROMIUM is missing and installing it needs root (run as root or install sudo)"
  fi
fi

echo "install-browser: $CHROMIUM is missing; installing Debian's chromium package (apt-get update && apt-get install -y chromium)"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium

if [[ ! -x "$CHROMIUM" ]]; then
  echo "install-browser: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "install-browser: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
