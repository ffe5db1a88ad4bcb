#!/usr/bin/env bash
# Private PostgreSQL and MariaDB servers for tests, benches and the demo.
#
# The machine's own PostgreSQL trusts local connections, so a revoked password would still log in
# there. These servers demand a password on every connection (scram-sha-256 / mysql_native_password),
# listen on free loopback ports, and keep everything under one directory.
#
#   scripts/test-databases.sh start DIR   # starts both, writes DIR/env (sourceable KEY=VALUE lines)
#   scripts/test-databases.sh stop DIR    # stops both and removes DIR
set -euo pipefail

cmd=${1:-}; dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then echo "usage: $0 start|stop DIR" >&2; exit 2; fi

die() { echo "test-databases: $*" >&2; exit 1; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

ensure_binaries() {
  if [[ -n "$(pg_bin)" ]] && command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null; then return; fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test-databases: installing postgresql and mariadb-server from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql mariadb-server >/dev/null
    # The packages start their own services; ours are private, theirs are left as the machine wants.
  fi
  [[ -n "$(pg_bin)" ]] || die "PostgreSQL server binaries (initdb) not found; install the 'postgresql' package"
  command -v mariadbd >/dev/null || die "MariaDB server (mariadbd) not found; install the 'mariadb-server' package"
}

# Node is the one interpreter the project already requires (no python3 on a minimal Debian).
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
random_password() { head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }

# Server processes refuse to run as root; run them as the packages' service users when we are root.
as_user() {
  local user=$1; shift
  if [[ $(id -u) -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

start() {
  ensure_binaries
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  # As root the servers run as their service users, who must traverse DIR (mktemp -d makes it 0700).
  [[ $(id -u) -eq 0 ]] && chmod 711 "$dir"
  [[ -e "$dir/env" ]] && die "$dir/env exists: servers may already run there (stop them first)"
  local bin; bin=$(pg_bin)
  local pg_user=postgres my_user=mysql
  [[ $(id -u) -eq 0 ]] || { pg_user=$(id -un); my_user=$(id -un); }

  # --- PostgreSQL
  local pg_port pg_pass; pg_port=$(free_port); pg_pass=$(random_password)
  mkdir -p "$dir/pg"; printf '%s\n' "$pg_pass" > "$dir/pg.pw"
  [[ $(id -u) -eq 0 ]] && chown -R "$pg_user" "$dir/pg" "$dir/pg.pw"
  chmod 700 "$dir/pg"
  as_user "$pg_user" "$bin/initdb" -D "$dir/pg/data" -U postgres --pwfile="$dir/pg.pw" \
    --auth=scram-sha-256 -E UTF8 --no-instructions >"$dir/pg-initdb.log" 2>&1 || { cat "$dir/pg-initdb.log" >&2; die "initdb failed"; }
  rm -f "$dir/pg.pw"
  as_user "$pg_user" "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c password_encryption=scram-sha-256" \
    start >/dev/null || { cat "$dir/pg/server.log" >&2; die "PostgreSQL did not start"; }

  # --- MariaDB
  local my_port my_pass; my_port=$(free_port); my_pass=$(random_password)
  mkdir -p "$dir/my"
  [[ $(id -u) -eq 0 ]] && chown -R "$my_user" "$dir/my"
  as_user "$my_user" mariadb-install-db --no-defaults --datadir="$dir/my/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/my-install.log" 2>&1 || { cat "$dir/my-install.log" >&2; die "mariadb-install-db failed"; }
  as_user "$my_user" bash -c "nohup mariadbd --no-defaults --datadir='$dir/my/data' --port=$my_port --bind-address=127.0.0.1 \
    --socket='$dir/my/mysqld.sock' --pid-file='$dir/my/mysqld.pid' --skip-name-resolve --skip-log-bin \
    --max-connections=300 --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M \
    --log-error='$dir/my/server.log' >/dev/null 2>&1 &"
  for _ in $(seq 1 150); do
    [[ -S "$dir/my/mysqld.sock" ]] && mariadb --no-defaults -S "$dir/my/mysqld.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  mariadb --no-defaults -S "$dir/my/mysqld.sock" -uroot -e 'select 1' >/dev/null 2>&1 || { cat "$dir/my/server.log" >&2; die "MariaDB did not start"; }
  # Only root@localhost (the private socket) survives from install-db: no password-less TCP user,
  # no anonymous user. Tests use a password-only admin over TCP.
  mariadb --no-defaults -S "$dir/my/mysqld.sock" -uroot -N -e \
    "SELECT CONCAT('DROP USER ', QUOTE(User), '@', QUOTE(Host), ';') FROM mysql.user WHERE NOT (Host = 'localhost' AND User IN ('root', 'mariadb.sys', 'mysql'))" \
    | mariadb --no-defaults -S "$dir/my/mysqld.sock" -uroot
  mariadb --no-defaults -S "$dir/my/mysqld.sock" -uroot <<SQL
CREATE USER 'rekey_admin'@'%' IDENTIFIED BY '$my_pass';
GRANT ALL PRIVILEGES ON *.* TO 'rekey_admin'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS rekey_test;
FLUSH PRIVILEGES;
SQL

  cat > "$dir/env" <<ENV
REKEY_TEST_DB_DIR=$dir
REKEY_TEST_PG_HOST=127.0.0.1
REKEY_TEST_PG_PORT=$pg_port
REKEY_TEST_PG_USER=postgres
REKEY_TEST_PG_PASSWORD=$pg_pass
REKEY_TEST_PG_DATABASE=postgres
REKEY_TEST_MYSQL_HOST=127.0.0.1
REKEY_TEST_MYSQL_PORT=$my_port
REKEY_TEST_MYSQL_USER=rekey_admin
REKEY_TEST_MYSQL_PASSWORD=$my_pass
REKEY_TEST_MYSQL_DATABASE=rekey_test
ENV
  chmod 600 "$dir/env"
  echo "$dir/env"
}

stop() {
  [[ -d "$dir" ]] || return 0
  dir=$(cd "$dir" && pwd)
  local bin; bin=$(pg_bin || true)
  local pg_user=postgres; [[ $(id -u) -eq 0 ]] || pg_user=$(id -un)
  if [[ -n "$bin" && -f "$dir/pg/data/postmaster.pid" ]]; then
    as_user "$pg_user" "$bin/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [[ -f "$dir/my/mysqld.pid" ]]; then
    local pid; pid=$(cat "$dir/my/mysqld.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
