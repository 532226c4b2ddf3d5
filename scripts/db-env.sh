# Source this: makes sure a PostgreSQL is reachable and exports DATABASE_URL for database $1.
#   . scripts/db-env.sh [database-name]
# Keeps DATABASE_URL when it already reaches a server. Otherwise starts (or creates) the local
# Debian cluster, installing PostgreSQL first when possible (root + apt-get), and creates a login
# role outdial/outdial that may create databases (the tests create one per test).

outdial_db_name=${1:-outdial}

outdial_die() { echo "db-env: $*" >&2; return 1 2>/dev/null || exit 1; }

outdial_as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"
  elif command -v sudo >/dev/null; then sudo -u postgres sh -c "$*"
  else sh -c "$*"; fi
}

outdial_reachable() { pg_isready -q -d "$1" >/dev/null 2>&1 && psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

if [ -n "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null && outdial_reachable "$DATABASE_URL"; then
  echo "db-env: using DATABASE_URL as given" >&2
else
  if ! command -v pg_ctlcluster >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "db-env: installing PostgreSQL with apt-get" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null \
        || outdial_die "apt-get install postgresql failed"
    else
      outdial_die "PostgreSQL is not installed. Install PostgreSQL 15 or newer (Debian/Ubuntu: sudo apt-get install postgresql postgresql-contrib), or set DATABASE_URL to a reachable server."
    fi
  fi
  # The packaged cluster 'main' when there is one (others may exist for other purposes).
  cluster=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main"' | head -n 1)
  [ -n "$cluster" ] || cluster=$(pg_lsclusters -h 2>/dev/null | head -n 1)
  if [ -z "$cluster" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    echo "db-env: creating PostgreSQL $ver cluster 'main'" >&2
    pg_createcluster "$ver" main >/dev/null || outdial_die "pg_createcluster failed"
    cluster=$(pg_lsclusters -h | head -n 1)
  fi
  set -- $cluster
  pg_ver=$1; pg_name=$2; pg_port=$3; pg_status=$4
  if [ "$pg_status" != online ]; then
    echo "db-env: starting PostgreSQL $pg_ver/$pg_name on port $pg_port" >&2
    pg_ctlcluster "$pg_ver" "$pg_name" start || outdial_die "could not start the cluster (see /var/log/postgresql/)"
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.5; done
  outdial_as_postgres "psql -p $pg_port -Atqc \"select 1 from pg_roles where rolname='outdial'\"" | grep -q 1 \
    || outdial_as_postgres "psql -p $pg_port -qc \"create role outdial login createdb password 'outdial'\"" >/dev/null \
    || outdial_die "could not create the outdial role"
  outdial_base="postgres://outdial:outdial@127.0.0.1:$pg_port"
  psql "$outdial_base/postgres" -Atqc "select 1 from pg_database where datname='$outdial_db_name'" | grep -q 1 \
    || psql "$outdial_base/postgres" -qc "create database \"$outdial_db_name\"" >/dev/null \
    || outdial_die "could not create database $outdial_db_name"
  export DATABASE_URL="$outdial_base/$outdial_db_name"
  echo "db-env: DATABASE_URL=$DATABASE_URL" >&2
fi
