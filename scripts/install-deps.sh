#!/usr/bin/env bash
# Installs what the tests need when it is missing: PostgreSQL 15, pgvector (built from
# Debian's source package, as bookworm does not ship it), the OpenFGA server binary,
# Chromium for the audit page test, helm for the chart's test (deploy/helm), node/npm
# and python3 for the clients' tests (and clients/typescript's node_modules).
# Idempotent: a second run only checks.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
PGBIN=/usr/lib/postgresql/15/bin
OPENFGA_VERSION=v1.22.1
STATICCHECK_VERSION=v0.8.2
HELM_VERSION=v4.3.2
need_apt=()
[ -x "$PGBIN/postgres" ] && [ -x "$PGBIN/initdb" ] || need_apt+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/vector.control ] || need_apt+=(postgresql-server-dev-15 build-essential dpkg-dev)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v curl >/dev/null || need_apt+=(curl) # scripts/newcomer.sh runs the demo's curl lines
# the machines ship node 20 and python3; Debian's are the fallback (its node 18 is too
# old for clients/typescript, whose test then says so)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ ! -f /usr/share/postgresql/15/extension/vector.control ]; then
  echo "install-deps: building pgvector from Debian's source package"
  src=/etc/apt/sources.list.d/zz-pgvector-src.sources
  # reuse the mirror configured for bookworm; only the suite and type change
  awk 'BEGIN{RS="";ORS="\n\n"} /Suites: bookworm( |$)/ {gsub(/Types: deb/,"Types: deb-src"); gsub(/Suites: [^\n]*/,"Suites: trixie"); print; exit}' /etc/apt/sources.list.d/debian.sources | $SUDO tee "$src" >/dev/null
  $SUDO apt-get update -qq
  work=$(mktemp -d)
  (cd "$work" && apt-get source --download-only -qq pgvector && dpkg-source -x pgvector_*.dsc pgv >/dev/null \
    && make -C pgv PG_CONFIG=$PGBIN/pg_config -s >/dev/null && $SUDO make -C pgv PG_CONFIG=$PGBIN/pg_config install -s >/dev/null)
  rm -rf "$work"
fi
GOBIN=$(go env GOPATH)/bin
# `openfga version` prints "dev" for go-installed binaries: read the module version instead
if [ ! -x "$GOBIN/openfga" ] || ! go version -m "$GOBIN/openfga" | grep -q "mod.*github.com/openfga/openfga.*$OPENFGA_VERSION"; then
  echo "install-deps: go install openfga $OPENFGA_VERSION"
  go install "github.com/openfga/openfga/cmd/openfga@$OPENFGA_VERSION"
fi
if [ ! -x "$GOBIN/staticcheck" ]; then
  echo "install-deps: go install staticcheck $STATICCHECK_VERSION"
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
# helm reports "v4.3" without the patch: read the module version, as for openfga
if [ ! -x "$GOBIN/helm" ] || ! go version -m "$GOBIN/helm" | grep -q "mod.*helm.sh/helm/v4.*$HELM_VERSION"; then
  echo "install-deps: go install helm $HELM_VERSION"
  go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi
# Node projects, each pinned by its package-lock.json: clients/typescript (the
# TypeScript client) and tools/openapi (Redocly, openapi-typescript and tsc for the
# OpenAPI check). `npm ci` runs only when a lock file changed since its last install.
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "install-deps: apt-get install nodejs npm"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || { echo "install-deps: Redocly (tools/openapi) needs Node.js >= 20.19 (have $(node --version))" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
for dir in "$root/clients/typescript" "$root/tools/openapi"; do
  stamp=$dir/node_modules/.clearance-lock.sha256
  if [ -f "$dir/package-lock.json" ] && ! sha256sum -c --status "$stamp" 2>/dev/null; then
    echo "install-deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    sha256sum "$dir/package-lock.json" > "$stamp"
  fi
done
