#!/usr/bin/env bash
# npm run demo: the main job, locally. Starts private PostgreSQL and MariaDB servers, registers an
# admin and an application user for each, rotates them, revokes the old credentials, proves the old
# passwords are refused and the new ones work, shows the status, and cleans everything up.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/rekey-demo-XXXXXX)
export REKEY_STORE_DIR="$work/store"
trap 'scripts/test-databases.sh stop "$work/db" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

rekey() { node scripts/rekey-bin.mjs "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting private PostgreSQL and MariaDB (password authentication only)"
scripts/test-databases.sh start "$work/db" >/dev/null
set -a; . "$work/db/env"; set +a

login_pg() { PGPASSWORD="$2" psql -h 127.0.0.1 -p "$REKEY_TEST_PG_PORT" -U "$1" -d postgres -tAc 'select 1' >/dev/null 2>&1; }
login_my() { mariadb --no-defaults -h 127.0.0.1 -P "$REKEY_TEST_MYSQL_PORT" -u "$1" -p"$2" -e 'select 1' >/dev/null 2>&1; }
first_pw="Demo-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"

PGPASSWORD="$REKEY_TEST_PG_PASSWORD" psql -q -h 127.0.0.1 -p "$REKEY_TEST_PG_PORT" -U postgres -d postgres \
  -c "CREATE ROLE demo_app LOGIN PASSWORD '$first_pw'" >/dev/null
mariadb --no-defaults -h 127.0.0.1 -P "$REKEY_TEST_MYSQL_PORT" -u "$REKEY_TEST_MYSQL_USER" -p"$REKEY_TEST_MYSQL_PASSWORD" \
  -e "CREATE USER 'demo_app'@'%' IDENTIFIED BY '$first_pw'; GRANT SELECT ON rekey_test.* TO 'demo_app'@'%';"

step "registering secrets (rekey put)"
printf '{"engine":"postgres","host":"127.0.0.1","port":%s,"username":"postgres","password":"%s","dbname":"postgres"}' \
  "$REKEY_TEST_PG_PORT" "$REKEY_TEST_PG_PASSWORD" | rekey put pg-admin --tag rekey:managed=false
printf '{"engine":"postgres","host":"127.0.0.1","port":%s,"username":"demo_app","password":"%s","dbname":"postgres","masterarn":"pg-admin"}' \
  "$REKEY_TEST_PG_PORT" "$first_pw" | rekey put demo/postgres --tag rekey:max-age=30d --tag rekey:environment=dev
printf '{"engine":"mariadb","host":"127.0.0.1","port":%s,"username":"%s","password":"%s","dbname":"rekey_test"}' \
  "$REKEY_TEST_MYSQL_PORT" "$REKEY_TEST_MYSQL_USER" "$REKEY_TEST_MYSQL_PASSWORD" | rekey put mariadb-admin --tag rekey:managed=false
printf '{"engine":"mariadb","host":"127.0.0.1","port":%s,"username":"demo_app","password":"%s","dbname":"rekey_test","masterarn":"mariadb-admin"}' \
  "$REKEY_TEST_MYSQL_PORT" "$first_pw" | rekey put demo/mariadb --tag rekey:strategy=single

step "rotating (rekey rotate)"
rekey rotate demo/postgres --reason "demo"
rekey rotate demo/mariadb --reason "demo"

step "revoking the previous credentials (rekey revoke)"
rekey revoke demo/postgres
rekey revoke demo/mariadb

step "proving it with real logins"
check() { if "$@"; then echo "  ok: $DESC"; else echo "  FAILED: $DESC"; exit 1; fi; }
DESC="old PostgreSQL password refused" check bash -c "! $(declare -f login_pg); login_pg demo_app '$first_pw'"
DESC="old MariaDB password refused" check bash -c "! $(declare -f login_my); login_my demo_app '$first_pw'"
pg_now=$(rekey get demo/postgres --reveal | node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(v.username+" "+v.password)')
my_now=$(rekey get demo/mariadb --reveal | node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(v.username+" "+v.password)')
DESC="AWSCURRENT logs in to PostgreSQL (as ${pg_now%% *})" check login_pg ${pg_now%% *} "${pg_now#* }"
DESC="AWSCURRENT logs in to MariaDB (as ${my_now%% *})" check login_my ${my_now%% *} "${my_now#* }"

step "status (rekey status)"
rekey status
echo
echo "demo finished: every old password refused, every current one works"
