#!/usr/bin/env bash
# newcomer.sh follows the README as a new user would, from a fresh clone of this
# repository's HEAD into a temporary directory:
#   1. builds the binary (go build, so --version shows the commit) and checks --version;
#   2. runs the README's first command, `go run ./cmd/clearance demo`, until it serves;
#   3. runs every command the demo printed: the exports, each curl line (a 2xx
#      answer, or the 404 its comment announces), and the `clearance token` line
#      (its token must search);
#   4. connects a real MCP client (the MCP Go SDK's, scripts/mcpclient) for
#      tools/list and a tools/call of search_tickets;
#   5. opens the audit page the demo names.
# (The README's second command, `make test`, is what CI runs around this script.)
# Exits non-zero on the first step that fails; prints each step. Needs Go and
# curl; runs offline with a warm module cache.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/clearance-newcomer.XXXXXX)
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM -- "-$demo_pid" 2>/dev/null || true # the demo's own process group
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== newcomer: %s\n' "$*"; }
fail() { printf 'newcomer: FAILED: %s\n' "$*" >&2; exit 1; }

step "git clone $src"
git clone -q "$src" "$work/clearance"
cd "$work/clearance"
head=$(git rev-parse HEAD)
echo "HEAD $head"

step "go build -buildvcs=true ./cmd/clearance; clearance --version"
# -buildvcs: this machine's go env may turn VCS stamping off (GOFLAGS).
go build -buildvcs=true -o "$work/bin/clearance" ./cmd/clearance
PATH="$work/bin:$PATH"
v=$(clearance --version)
echo "$v"
[[ "$v" == *"${head:0:12}"* ]] || fail "--version says '$v', want the clone's commit ${head:0:12}"

step "go run ./cmd/clearance demo (README, first command)"
# Its own session and process group, so cleanup stops go run and the demo together.
setsid go run ./cmd/clearance demo >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
for _ in $(seq 1 180); do
  grep -q 'Ctrl-C stops' "$work/demo.out" && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.out" "$work/demo.err" >&2; fail "the demo exited"; }
  sleep 0.5
done
grep -q 'Ctrl-C stops' "$work/demo.out" || { cat "$work/demo.out" "$work/demo.err" >&2; fail "the demo did not finish its walkthrough in 90 s"; }
sed -n '1,/^clearance demo: may/p' "$work/demo.out" | head -12
base=$(sed -n 's/^Serving on \([^;]*\);.*/\1/p' "$work/demo.out")
[ -n "$base" ] || fail "the demo printed no 'Serving on' line"
echo "serving on $base"

step "the demo's printed commands"
# Shell lines as printed: exports, comments and curl commands with their
# backslash continuations, joined into one line each.
mapfile -t cmds < <(awk '
  cont { line = line " " $0; if ($0 !~ /\\$/) { print line; cont = 0 }; next }
  /^export TOKEN_[A-Z_]*=/ { print; next }
  /^# / { print; next }
  /^curl / { line = $0; if ($0 ~ /\\$/) { cont = 1 } else { print line }; next }
' "$work/demo.out" | sed 's/\\ \{1,\}/ /g')
for c in "${cmds[@]}"; do
  [[ "$c" == export* ]] && { eval "$c"; echo "${c%%=*}=…"; }
done
[ -n "${TOKEN_ANNE:-}" ] && [ -n "${TOKEN_ANNE_COPILOT:-}" ] && [ -n "${TOKEN_AUDIT:-}" ] || fail "the demo printed no TOKEN_ANNE, TOKEN_ANNE_COPILOT or TOKEN_AUDIT"
ran=0 comment=""
for c in "${cmds[@]}"; do
  case "$c" in
    "# "*) comment=$c; continue ;;
    curl*) ;;
    *) continue ;;
  esac
  want=2
  [[ "$comment" == *404* ]] && want=404
  echo "$comment"
  echo "\$ ${c:0:150}$([ ${#c} -gt 150 ] && echo …)"
  code=$(eval "$c -o '$work/body' -w '%{http_code}'") || fail "curl failed: $c"
  echo "   -> $code $(head -c 160 "$work/body")"
  if [ "$want" = 404 ]; then
    [ "$code" = 404 ] || fail "want 404, got $code: $c"
  else
    [[ "$code" == 2* ]] || fail "want 2xx, got $code: $c"
    # An MCP tool that fails answers 200 with isError: that is a failure too.
    grep -q '"isError":true' "$work/body" && fail "MCP tool error: $(cat "$work/body")"
  fi
  ran=$((ran + 1))
  comment=""
done
[ "$ran" -ge 8 ] || fail "ran $ran curl commands, the demo prints 8"

tokline=$(sed -n 's/^More tokens: \(clearance token .*\) \[--act copilot\]$/\1/p' "$work/demo.out")
[ -n "$tokline" ] || fail "the demo printed no 'More tokens: clearance token' line"
echo "\$ $tokline"
dave=$(eval "$tokline")
code=$(curl -s -o "$work/body" -w '%{http_code}' "$base/v1/search" -H "Authorization: Bearer $dave" \
  -H 'Content-Type: application/json' -d '{"query":"login timeout","top_k":3}')
echo "   dave's token searches -> $code $(head -c 120 "$work/body")"
[ "$code" = 200 ] || fail "a token from the printed 'clearance token' command got $code"

step "MCP: tools/list and tools/call with the MCP Go SDK's client"
go run ./scripts/mcpclient -url "$base/mcp" -token "$TOKEN_ANNE_COPILOT" || fail "MCP client"

step "the audit page, signed in with TOKEN_AUDIT as the demo says"
jar="$work/cookies"
code=$(curl -s -L -c "$jar" -b "$jar" -o "$work/body" -w '%{http_code}' "$base/audit")
echo "GET $base/audit (no session: to the sign-in form) -> $code"
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$work/body" | head -1)
[ "$code" = 200 ] && [ -n "$csrf" ] || fail "the audit page's sign-in form: $code"
code=$(curl -s -L -c "$jar" -b "$jar" -o "$work/body" -w '%{http_code}' "$base/audit/login" \
  --data-urlencode "csrf=$csrf" --data-urlencode "token=$TOKEN_AUDIT")
records=$(grep -c 'class="mono record-link"' "$work/body" || true)
echo "POST $base/audit/login -> $code, the list shows $records record(s)"
[ "$code" = 200 ] && [ "$records" -gt 0 ] || fail "signing in to the audit page with TOKEN_AUDIT: $code, $records records"

echo
echo "newcomer: every step passed (clone, build, --version, demo, $ran curl commands, clearance token, MCP, audit page)"
