# Sourced by scripts/demo and the benchmark: start/stop a private PostgreSQL on a free
# loopback port with default durability settings, as the `postgres` OS user when run as root.
# Exports DATABASE_URL (password auth over TCP).

pg_throwaway_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local major
  major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  if [ -z "$major" ]; then
    echo "PostgreSQL server binaries not found in /usr/lib/postgresql; install them (apt-get install postgresql) or set PG_BIN" >&2
    return 1
  fi
  echo "/usr/lib/postgresql/$major/bin"
}

pg_throwaway_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_throwaway_start() {
  local bin port pw
  bin=$(pg_throwaway_bin)
  PG_THROWAWAY_DIR=$(mktemp -d /tmp/wasmig-pg.XXXXXX)
  pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  printf '%s' "$pw" > "$PG_THROWAWAY_DIR/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_THROWAWAY_DIR"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pg_throwaway_as "$bin/initdb" -D "$PG_THROWAWAY_DIR/data" -U wasmig_admin --pwfile "$PG_THROWAWAY_DIR/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  pg_throwaway_as "$bin/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -l "$PG_THROWAWAY_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_THROWAWAY_DIR -c max_connections=${PG_MAX_CONNECTIONS:-200} ${PG_EXTRA_OPTS:-}" \
    start >/dev/null
  export DATABASE_URL="postgres://wasmig_admin:$pw@127.0.0.1:$port/postgres"
  echo "throwaway PostgreSQL on 127.0.0.1:$port (data in $PG_THROWAWAY_DIR, removed on exit)"
}

pg_throwaway_stop() {
  [ -n "${PG_THROWAWAY_DIR:-}" ] || return 0
  pg_throwaway_as "$(pg_throwaway_bin)/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_THROWAWAY_DIR"
  PG_THROWAWAY_DIR=
}
