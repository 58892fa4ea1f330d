#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 (install and start them when absent; idempotent).
# Prints the admin URL the tests should use for PostgreSQL.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_ready=""
apt_install() {
  [ -n "$apt_ready" ] || { as_root apt-get update -q >/dev/null; apt_ready=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@" >/dev/null
}

pg_url=${CREWDESK_TEST_PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}
pg_ok() { psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "installing PostgreSQL..." >&2
  apt_install postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! pg_ok "$pg_url"; then
  # A stock Debian cluster wants a password over TCP: give the postgres role one for the tests.
  as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'crewdesk'" >/dev/null
  pg_url=postgresql://postgres:crewdesk@127.0.0.1:5432/postgres
  pg_ok "$pg_url" || { echo "PostgreSQL answers but refuses $pg_url" >&2; exit 1; }
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null 2>&1 || { echo "installing Redis..." >&2; apt_install redis-server; }
  mkdir -p /tmp/crewdesk-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/crewdesk-redis --logfile /tmp/crewdesk-redis/redis.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis did not start" >&2; exit 1; }
fi

# The e-mail tests start their own dovecot (own config, random loopback port); they need only the binaries.
if [ ! -x /usr/sbin/dovecot ] || [ ! -e /usr/lib/dovecot/imap ]; then
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    echo "installing dovecot-imapd..." >&2
    if apt_install dovecot-imapd; then
      # A started system-wide dovecot would hold ports 143/993 for nothing; the tests never use it.
      if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now dovecot.service >/dev/null 2>&1 || true
      else
        as_root invoke-rc.d dovecot stop >/dev/null 2>&1 || true
      fi
    else
      echo "could not install dovecot-imapd: the IMAP tests will be skipped" >&2
    fi
  else
    echo "dovecot-imapd is missing and this is not root: the IMAP tests will be skipped" >&2
  fi
fi

# The metrics tests validate deploy/prometheus with promtool and run a real Prometheus (own config, random port,
# temporary storage); they need only the binaries (Debian's package, about 20 s).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    echo "installing prometheus..." >&2
    if apt_install --no-install-recommends prometheus; then
      # The packaged service would hold port 9090 for nothing; the tests never use it.
      if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
      else
        as_root invoke-rc.d prometheus stop >/dev/null 2>&1 || true
      fi
    else
      echo "could not install prometheus: the Prometheus tests will be skipped" >&2
    fi
  else
    echo "prometheus is missing and this is not root: the Prometheus tests will be skipped" >&2
  fi
fi

# tests/security/test_compose.py asks `docker compose config` / `docker-compose config` which ports the file publishes;
# `config` needs no Docker engine. Debian's docker-compose (1.29) is enough.
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    echo "installing docker-compose..." >&2
    apt_install --no-install-recommends docker-compose || echo "could not install docker-compose: its config check will be skipped" >&2
  else
    echo "docker-compose is missing and this is not root: its config check will be skipped" >&2
  fi
fi

# The support console's end-to-end test (tests/integration/test_console_browser.py) drives Debian's headless Chromium
# with Playwright's Python package (it never downloads a browser of its own); it needs only the binary.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    echo "installing chromium..." >&2
    apt_install --no-install-recommends chromium || echo "could not install chromium: the browser test fails in CI, and is skipped elsewhere" >&2
  else
    echo "chromium is missing and this is not root: the browser test will be skipped" >&2
  fi
fi

echo "$pg_url"
