#!/usr/bin/env bash
# Lints api/openapi.yaml with Redocly (rules in redocly.yaml), generates the
# TypeScript types a client would use with openapi-typescript and type-checks
# src/check.ts against them with tsc --noEmit. Needs the pinned tools installed
# (scripts/install-deps.sh runs npm ci here). Runs offline.
set -euo pipefail
cd "$(dirname "$0")"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
bin=node_modules/.bin
[ -x $bin/redocly ] || { echo "tools/openapi: run scripts/install-deps.sh first" >&2; exit 1; }
# Redocly prints a banner about Node 20's end of life; the result lines are what matter.
$bin/redocly lint --config redocly.yaml --format=stylish ../../api/openapi.yaml 2>&1 | grep -v '[║╔╚]' | grep -v '^\s*$'
$bin/openapi-typescript ../../api/openapi.yaml -o gen/openapi.d.ts --silent
$bin/tsc -p tsconfig.json
echo "tools/openapi: lint clean, generated types compile"
