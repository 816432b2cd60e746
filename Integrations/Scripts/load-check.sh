#!/usr/bin/env bash
# Load check of shop-server: builds it in release, starts it on 127.0.0.1 (loopback only) with the
# baseline routes, and runs wrk against four routes, a few seconds each:
#
#   customer       GET  /customers/1            one Keel request (GetUser: an event-sourced load)
#   order          POST /orders                 one PlaceOrder: five Keel requests, the payment
#                                               pipeline, an event on the bus
#   base-customer  GET  /baseline/customers/1   the same JSON from a dictionary, without Keel
#   base-order     POST /baseline/orders        the same JSON priced from a dictionary, without Keel
#
# The baseline routes go through the same middleware (request id, traceparent, access log at the
# same level, drain gate, JSON coding), so ours/baseline is what Keel's services add per request.
# It prints requests/s and p99 for each, and the two ratios, then stops the server with SIGTERM
# (a graceful shutdown) and checks that it exits 0.
#
# It fails (exit 1) when the server does not start or answer, when wrk reports a socket error, or
# when a request gets an answer other than 2xx; never because of a ratio.
#
#   bash Integrations/Scripts/load-check.sh            # 5 s per route
#   DURATION=2s bash Integrations/Scripts/load-check.sh
#
# Environment: DURATION (default 5s), CONNECTIONS (16), THREADS (2), PORT (18080),
# CONFIGURATION (release; CI's smoke run uses the debug build its Integrations step made),
# PAYMENTS_CONCURRENCY (64: the payments bulkhead's permits, so that orders are not shed),
# SKIP_BUILD=1 to reuse the built Integrations/.build/$CONFIGURATION/shop-server.
# Installs wrk with apt-get when it is missing (as root, or through sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
CONFIGURATION=${CONFIGURATION:-release}
ADDRESS=127.0.0.1
BASE_URL="http://$ADDRESS:$PORT"
SCRIPTS=Integrations/Scripts

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi

if [[ "${SKIP_BUILD:-}" != "1" ]]; then
    swift build -c "$CONFIGURATION" --package-path Integrations --product shop-server -Xswiftc -warnings-as-errors
fi
SERVER=Integrations/.build/$CONFIGURATION/shop-server

LOG=$(mktemp -t shop-server-log.XXXXXX)
RESULTS=$(mktemp -d -t shop-load.XXXXXX)
# The payments bulkhead sized for the load (the sample's 2 concurrent charges shed a fifth to a half
# of the orders with 503 payments_busy; PAYMENTS_CONCURRENCY=2 shows that); only errors are
# logged, for ours and the baseline alike.
"$SERVER" --host "$ADDRESS" --port "$PORT" --baseline --stock 1000000000 --log-level error \
    --payments-concurrency "${PAYMENTS_CONCURRENCY:-64}" 2>"$LOG" &
SERVER_PID=$!

stop_server() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT

# Wait for readiness: at most 30 s.
ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "error: shop-server exited before it was ready" >&2
        cat "$LOG" >&2
        exit 1
    fi
    if curl -fsS "$BASE_URL/ready" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ $ready -ne 1 ]]; then
    echo "error: shop-server did not become ready on $BASE_URL within 30 s" >&2
    cat "$LOG" >&2
    exit 1
fi

# Every route answers once before the load.
curl -fsS "$BASE_URL/customers/1" >/dev/null
curl -fsS "$BASE_URL/baseline/customers/1" >/dev/null
ORDER_JSON='{"customerId": 1, "lines": [{"sku": "cable", "quantity": 1}]}'
curl -fsS -H 'Content-Type: application/json' -d "$ORDER_JSON" "$BASE_URL/orders" >/dev/null
curl -fsS -H 'Content-Type: application/json' -d "$ORDER_JSON" "$BASE_URL/baseline/orders" >/dev/null

failed=0
# run NAME PATH [LUA]: runs wrk and keeps its output in $RESULTS/NAME.
run() {
    local name=$1 path=$2 script=${3:-}
    local args=(-t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency)
    if [[ -n "$script" ]]; then args+=(-s "$script"); fi
    wrk "${args[@]}" "$BASE_URL$path" >"$RESULTS/$name"
    if grep -q "Socket errors" "$RESULTS/$name"; then
        echo "error: $name: wrk reports socket errors: $(grep 'Socket errors' "$RESULTS/$name")" >&2
        failed=1
    fi
    if grep -q "Non-2xx or 3xx responses" "$RESULTS/$name"; then
        echo "error: $name: $(grep 'Non-2xx or 3xx responses' "$RESULTS/$name" | xargs)" >&2
        failed=1
    fi
}

run customer /customers/1
run base-customer /baseline/customers/1
run order /orders "$SCRIPTS/place-order.lua"
run base-order /baseline/orders "$SCRIPTS/place-order.lua"

# requests/s and p99 (in ms) of one result.
rps() { awk '/^Requests\/sec:/ { print $2 }' "$RESULTS/$1"; }
p99() {
    awk '$1 == "99%" {
        value = $2; unit = value; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", value)
        if (unit == "us") value /= 1000; else if (unit == "s") value *= 1000
        printf "%.2f", value
    }' "$RESULTS/$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "shop-server ($CONFIGURATION) load check: wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $BASE_URL ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-15s %-27s %12s %10s\n' route path "requests/s" "p99 ms"
printf '%-15s %-27s %12s %10s\n' customer "GET /customers/1" "$(rps customer)" "$(p99 customer)"
printf '%-15s %-27s %12s %10s\n' base-customer "GET /baseline/customers/1" "$(rps base-customer)" "$(p99 base-customer)"
printf '%-15s %-27s %12s %10s\n' order "POST /orders" "$(rps order)" "$(p99 order)"
printf '%-15s %-27s %12s %10s\n' base-order "POST /baseline/orders" "$(rps base-order)" "$(p99 base-order)"
echo "ratio ours/baseline, requests/s: customer $(ratio "$(rps customer)" "$(rps base-customer)"), order $(ratio "$(rps order)" "$(rps base-order)")"
echo "ratio ours/baseline, p99:        customer $(ratio "$(p99 customer)" "$(p99 base-customer)"), order $(ratio "$(p99 order)" "$(p99 base-order)")"

# The server still answers after the load, then shuts down gracefully on SIGTERM.
if ! curl -fsS "$BASE_URL/health" >/dev/null; then
    echo "error: shop-server does not answer /health after the load" >&2
    failed=1
fi
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
trap - EXIT
if [[ $status -ne 0 ]]; then
    echo "error: shop-server exited with status $status after SIGTERM" >&2
    tail -20 "$LOG" >&2
    failed=1
fi
if grep -qiE '\] error|critical' "$LOG"; then
    echo "shop-server logged errors:" >&2
    grep -iE '\] error|critical' "$LOG" | head -5 >&2
fi
rm -rf "$RESULTS" "$LOG"
if [[ $failed -ne 0 ]]; then
    echo "load check FAILED" >&2
    exit 1
fi
echo "load check passed: every request answered 2xx"
