#!/usr/bin/env bash
# Make sure Dovecot's IMAP server is installed: the IMAP tests run a throwaway instance of it on
# loopback (PROTOCOLS.md C.8). Idempotent; safe to run as root in CI. When it cannot install the
# package it says how and exits non-zero, so a missing server is never mistaken for a pass.
set -euo pipefail

have_dovecot() {
  command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]
}

if have_dovecot; then
  echo "dovecot: already installed ($(/usr/sbin/dovecot --version 2>/dev/null || dovecot --version))"
  exit 0
fi

how_to() {
  echo "dovecot: not installed and could not be installed here." >&2
  echo "  Install it as root with:" >&2
  echo "    apt-get update && apt-get install -y --no-install-recommends dovecot-imapd" >&2
  echo "  (the IMAP tests in tests/channels/ need the 'dovecot' binary)" >&2
}

if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    how_to
    exit 1
  fi
else
  SUDO=""
fi

if ! command -v apt-get >/dev/null 2>&1; then
  how_to
  exit 1
fi

echo "dovecot: installing dovecot-imapd with apt-get"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d may or may not stop the package from starting a system-wide service; the tests never
# rely on that service, they start their own instance on a free port.
if ! $SUDO apt-get update -q || \
   ! $SUDO apt-get install -y -q --no-install-recommends dovecot-imapd; then
  how_to
  exit 1
fi

# A freshly installed package may have started the system service on 143/993; stop it so it holds no
# ports and uses no CPU during the tests (ignore failure: there may be no init system at all).
if command -v service >/dev/null 2>&1; then
  $SUDO service dovecot stop >/dev/null 2>&1 || true
fi

if ! have_dovecot; then
  how_to
  exit 1
fi
echo "dovecot: installed ($(/usr/sbin/dovecot --version 2>/dev/null || true))"
