#!/usr/bin/env bash
# Ensure the pgvector extension (0.8.0) is installed into the machine's
# PostgreSQL 15 (Debian 12 "bookworm") and that PostgreSQL is up on
# 127.0.0.1:5432.
#
# pgvector is not packaged for bookworm, so on the slow path we fetch the
# Debian 13 ("trixie") *source* package pgvector 0.8.0-1 through an isolated,
# throw-away apt state (the machine's own apt configuration is never changed)
# and build it with PGXS against postgresql-server-dev-15.
#
# Idempotent: if vector.control (default_version 0.8.0) and vector.so are
# already installed, only the server check and the smoke test run.
# Must run as root; never prompts (CI=true, no stdin).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PG_MAJOR="${PG_MAJOR:-15}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PGV_VERSION="0.8.0"
PGV_DEB_VERSION="0.8.0-1"
SRC_SUITE="trixie"
DEFAULT_MIRROR="http://deb.debian.org/debian"

PG_SHAREDIR="/usr/share/postgresql/${PG_MAJOR}"
PG_LIBDIR="/usr/lib/postgresql/${PG_MAJOR}/lib"
CHECK_DB="pgv_check"

log() { echo "install-pgvector: $*"; }
die() { echo "install-pgvector: ERROR: $*" >&2; exit 1; }

START_TS=$(date +%s)
WORKDIR=""
cleanup() {
  if [[ -n "$WORKDIR" && -d "$WORKDIR" ]]; then
    rm -rf -- "$WORKDIR"
  fi
}
trap cleanup EXIT

# --------------------------------------------------------------------------
# PostgreSQL server
# --------------------------------------------------------------------------
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

ensure_postgres_running() {
  command -v pg_isready >/dev/null 2>&1 || die "pg_isready not found (is PostgreSQL ${PG_MAJOR} installed?)"
  if pg_ready; then
    log "PostgreSQL is accepting connections on ${PG_HOST}:${PG_PORT}"
    return 0
  fi
  command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster not found; cannot start PostgreSQL ${PG_MAJOR}"
  log "PostgreSQL not reachable on ${PG_HOST}:${PG_PORT}; starting cluster ${PG_MAJOR}/main"
  pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start 2>/dev/null \
    || pg_ctlcluster "$PG_MAJOR" main start \
    || log "pg_ctlcluster start returned non-zero (it may already be starting); waiting"
  local i
  for ((i = 0; i < 60; i++)); do
    if pg_ready; then
      log "PostgreSQL is up"
      return 0
    fi
    sleep 1
  done
  die "PostgreSQL did not become ready on ${PG_HOST}:${PG_PORT} within 60s"
}

# --------------------------------------------------------------------------
# Installed?
# --------------------------------------------------------------------------
pgvector_installed() {
  local control="${PG_SHAREDIR}/extension/vector.control"
  [[ -f "$control" ]] || return 1
  grep -Eq "^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'${PGV_VERSION//./\\.}'" "$control" || return 1
  [[ -f "${PG_SHAREDIR}/extension/vector--${PGV_VERSION}.sql" ]] || return 1
  [[ -f "${PG_LIBDIR}/vector.so" ]] || return 1
  return 0
}

# --------------------------------------------------------------------------
# Build dependencies (machine's normal apt)
# --------------------------------------------------------------------------
pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

ensure_build_deps() {
  local wanted=("postgresql-server-dev-${PG_MAJOR}" make gcc libc6-dev dpkg-dev xz-utils ca-certificates)
  local missing=() p
  for p in "${wanted[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "build dependencies already installed"
    return 0
  fi
  log "installing build dependencies: ${missing[*]}"
  apt-get update -qq -o Acquire::Retries=3 >/dev/null
  apt-get install -y -qq --no-install-recommends -o Acquire::Retries=3 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
}

# --------------------------------------------------------------------------
# Mirror detection: the URI the machine already uses for the Debian archive
# (the entry whose suite is this release's codename, e.g. "bookworm").
# Handles one-line (*.list) and deb822 (*.sources) formats.
# --------------------------------------------------------------------------
detect_mirror() {
  local codename="" f uri=""
  if [[ -r /etc/os-release ]]; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  fi
  [[ -n "$codename" ]] || codename="bookworm"

  local files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && files+=("$f"); done
  for f in "${files[@]}"; do
    # deb [opts] URI SUITE COMPONENTS...
    uri=$(sed -E -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" \
      | awk -v cn="$codename" '($1=="deb"||$1=="deb-src") && $3==cn && $2 ~ /^https?:\/\// {print $2; exit}')
    [[ -n "$uri" ]] && break
  done

  if [[ -z "$uri" ]]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f "$f" ]] || continue
      # Paragraphs separated by blank lines; fields are case-insensitive.
      uri=$(awk -v cn="$codename" '
        function flush() {
          if (types ~ /(^|[[:space:]])deb(-src)?([[:space:]]|$)/ && enabled !~ /^[[:space:]]*(no|false)/ \
              && (" " suites " ") ~ ("[[:space:]]" cn "[[:space:]]") && uris != "") {
            n = split(uris, u, /[[:space:]]+/)
            for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) { print u[i]; found = 1; exit }
          }
          types = ""; suites = ""; uris = ""; enabled = ""; last = ""
        }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^[[:space:]]/ { if (last == "uris") uris = uris " " $0; else if (last == "suites") suites = suites " " $0; next }
        {
          key = tolower($0); sub(/:.*/, "", key)
          val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
          last = key
          if (key == "types") types = val
          else if (key == "suites") suites = val
          else if (key == "uris") uris = val
          else if (key == "enabled") enabled = tolower(val)
        }
        END { if (!found) flush() }
      ' "$f")
      [[ -n "$uri" ]] && break
    done
  fi

  [[ -n "$uri" ]] || uri="$DEFAULT_MIRROR"
  echo "${uri%/}"
}

# --------------------------------------------------------------------------
# Fetch + build + install
# --------------------------------------------------------------------------
find_pg_config() {
  local c="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
  if [[ -x "$c" ]]; then echo "$c"; return 0; fi
  if command -v pg_config >/dev/null 2>&1 && pg_config --version | grep -q " ${PG_MAJOR}\."; then
    command -v pg_config; return 0
  fi
  return 1
}

keyring_has_trixie() {
  local kr="$1"
  [[ -f "$kr" ]] || return 1
  if command -v gpg >/dev/null 2>&1; then
    gpg --batch --no-default-keyring --keyring "$kr" --list-keys 2>/dev/null | grep -q "(13/trixie)"
  else
    # Same package ships the per-release fragments and the combined keyring.
    [[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]]
  fi
}

build_and_install() {
  ensure_build_deps

  local pg_config
  pg_config=$(find_pg_config) || die "pg_config for PostgreSQL ${PG_MAJOR} not found"
  log "using ${pg_config} ($("$pg_config" --version))"

  WORKDIR=$(mktemp -d /tmp/install-pgvector.XXXXXX)
  local aptdir="${WORKDIR}/apt"
  mkdir -p "${aptdir}/lists/partial" "${aptdir}/cache/archives/partial" "${aptdir}/sources.list.d" "${WORKDIR}/src"

  local mirror keyring="/usr/share/keyrings/debian-archive-keyring.gpg" opts
  mirror=$(detect_mirror)
  if keyring_has_trixie "$keyring"; then
    opts="[signed-by=${keyring}]"
  else
    # bookworm's keyring lacks the trixie archive key: accept the index
    # unauthenticated. Acceptable here because this is only a *source*
    # package that we compile ourselves (no binaries are installed from it).
    opts="[trusted=yes]"
  fi
  echo "deb-src ${opts} ${mirror} ${SRC_SUITE} main" > "${aptdir}/sources.list"
  log "fetching pgvector ${PGV_DEB_VERSION} source from ${mirror} ${SRC_SUITE} (isolated apt state)"

  # Isolated apt: own sources, lists and cache; nothing under /etc/apt or
  # /var/lib/apt/lists is touched.
  local apt_iso=(
    -o "Dir::Etc::SourceList=${aptdir}/sources.list"
    -o "Dir::Etc::SourceParts=${aptdir}/sources.list.d"
    -o "Dir::State::Lists=${aptdir}/lists"
    -o "Dir::Cache=${aptdir}/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
    -o "Acquire::Retries=3"
  )
  apt-get "${apt_iso[@]}" update -qq >/dev/null \
    || die "apt-get update of the isolated ${SRC_SUITE} deb-src index failed"
  (
    cd "${WORKDIR}/src"
    apt-get "${apt_iso[@]}" source -qq "pgvector=${PGV_DEB_VERSION}" >/dev/null
  ) || die "apt-get source pgvector=${PGV_DEB_VERSION} failed (is it still in ${SRC_SUITE}?)"

  local srcdir="${WORKDIR}/src/pgvector-${PGV_VERSION}"
  [[ -f "${srcdir}/Makefile" ]] || die "unpacked source not found at ${srcdir}"

  # OPTFLAGS="" as in Debian's own build: no -march=native, so the module is
  # portable across CPUs (pgvector dispatches SIMD at run time where it can).
  log "building pgvector ${PGV_VERSION}"
  make -C "$srcdir" -s -j"$(nproc)" PG_CONFIG="$pg_config" OPTFLAGS="" >/dev/null \
    || die "make failed"
  log "installing pgvector ${PGV_VERSION}"
  make -C "$srcdir" -s PG_CONFIG="$pg_config" OPTFLAGS="" install >/dev/null \
    || die "make install failed"

  cleanup
  WORKDIR=""
  pgvector_installed || die "pgvector files not found after make install"
}

# --------------------------------------------------------------------------
# Smoke test
# --------------------------------------------------------------------------
psql_q() {
  local db="$1"; shift
  psql -X -q -At -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

drop_check_db() {
  psql_q postgres -c "DROP DATABASE IF EXISTS ${CHECK_DB}" >/dev/null 2>&1 || true
}

verify() {
  log "verifying in scratch database ${CHECK_DB}"
  if [[ "$(psql_q postgres -c "SELECT 1 FROM pg_database WHERE datname='${CHECK_DB}'")" != "1" ]]; then
    psql_q postgres -c "CREATE DATABASE ${CHECK_DB}" >/dev/null 2>&1 \
      || [[ "$(psql_q postgres -c "SELECT 1 FROM pg_database WHERE datname='${CHECK_DB}'")" == "1" ]] \
      || die "could not create database ${CHECK_DB}"
  fi
  trap 'drop_check_db; cleanup' EXIT

  local out
  out=$(PGOPTIONS="-c client_min_messages=warning" psql_q "$CHECK_DB" \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" \
    -c "SELECT round(('[1,2,3]'::vector <=> '[1,2,4]'::vector)::numeric, 6)" \
    -c "DROP TABLE IF EXISTS pgv_items" \
    -c "CREATE TABLE pgv_items (id int PRIMARY KEY, embedding vector(3))" \
    -c "INSERT INTO pgv_items VALUES (1, '[1,2,3]'), (2, '[-1,0,5]'), (3, '[9,1,0]')" \
    -c "CREATE INDEX pgv_items_hnsw ON pgv_items USING hnsw (embedding vector_cosine_ops)" \
    -c "SET hnsw.iterative_scan = relaxed_order" \
    -c "SHOW hnsw.iterative_scan" \
    -c "SET enable_seqscan = off" \
    -c "SELECT id FROM pgv_items ORDER BY embedding <=> '[1,2,4]' LIMIT 1" 2>&1) \
    || die "smoke test failed: ${out}"

  local -a lines
  mapfile -t lines <<<"$out"
  # Expected: extversion, distance, iterative_scan, nearest id
  [[ "${lines[0]:-}" == "$PGV_VERSION" ]] || die "extension version is '${lines[0]:-}', expected ${PGV_VERSION}"
  # 1 - 17/sqrt(14*21) = 0.0085398 (float4 arithmetic may differ in the last digit)
  awk -v d="${lines[1]:-x}" 'BEGIN { exit !(d + 0 > 0.00853 && d + 0 < 0.00855) }' \
    || die "unexpected cosine distance '${lines[1]:-}'"
  [[ "${lines[2]:-}" == "relaxed_order" ]] || die "hnsw.iterative_scan not supported (got '${lines[2]:-}')"
  [[ "${lines[3]:-}" == "1" ]] || die "HNSW nearest-neighbour query returned '${lines[3]:-}', expected 1"

  drop_check_db
  trap cleanup EXIT
  log "OK: vector ${lines[0]}, cosine distance ${lines[1]}, HNSW index + hnsw.iterative_scan work"
}

# --------------------------------------------------------------------------
main() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root"
  ensure_postgres_running
  if pgvector_installed; then
    log "pgvector ${PGV_VERSION} already installed for PostgreSQL ${PG_MAJOR}; skipping build"
  else
    build_and_install
  fi
  verify
  log "done in $(( $(date +%s) - START_TS ))s"
}

main "$@"
