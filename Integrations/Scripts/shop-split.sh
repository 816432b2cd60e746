#!/usr/bin/env bash
# The shop in two processes on loopback, with one command:
#
#   bash Integrations/Scripts/shop-split.sh
#
# "front" runs user, catalog and inventory, and serves their requests over gRPC on 127.0.0.1:7071;
# "orders" runs order, payment, shipping and notification, reaches the other three through that
# address, and serves the shop's HTTP API on 127.0.0.1:8080. Both keep their services' storage in
# one PostgreSQL schema (`shop_split`): the one named by KEEL_POSTGRES_HOST, KEEL_POSTGRES_PORT,
# KEEL_POSTGRES_USER and KEEL_POSTGRES_DATABASE, or else a throwaway server this script starts
# with postgres-server.sh (and stops when it ends). The same service code runs as in the
# single-process shop.
#
#   curl -s -X POST 127.0.0.1:8080/orders -H 'content-type: application/json' \
#        -d '{"customerId": 1, "lines": [{"sku": "cable", "quantity": 2}], "reference": "web-1"}'
#   curl -s 127.0.0.1:8080/stock/cable
#
# Ctrl-C (or SIGTERM) stops both gracefully. Kill either process (`kill -9`) and start it again
# with the command this script prints: it recovers its state and interrupted sagas from the schema.
# Overrides: SPLIT_HTTP_PORT (8080), SPLIT_GRPC_PORT (7071), SPLIT_SCHEMA (shop_split), SPLIT_STOCK,
# SPLIT_BUILD=0 to skip `swift build`. shop-server's own SHOP_* variables would apply to both
# processes alike, so the script clears them: configure each process by its flags below.
#
#   bash Integrations/Scripts/shop-split.sh --check
#
# starts both, places one order through them (the order process asks the front's services over
# gRPC), checks the answer and the stock it left, and stops both: CI's smoke run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HTTP_PORT=${SPLIT_HTTP_PORT:-8080}
GRPC_PORT=${SPLIT_GRPC_PORT:-7071}
SCHEMA=${SPLIT_SCHEMA:-shop_split}
STARTED_POSTGRES=""
PIDS=()

stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "$STARTED_POSTGRES" ]]; then
        PORT=$STARTED_POSTGRES bash Integrations/Scripts/postgres-server.sh stop >/dev/null 2>&1 || true
    fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM

if [[ -z "${KEEL_POSTGRES_HOST:-}" ]]; then
    export PORT=${PORT:-54331}
    eval "$(bash Integrations/Scripts/postgres-server.sh start)"
    STARTED_POSTGRES=$PORT
fi
STORAGE="postgres://${KEEL_POSTGRES_USER:-postgres}@${KEEL_POSTGRES_HOST}:${KEEL_POSTGRES_PORT:-5432}/${KEEL_POSTGRES_DATABASE:-keel}?schema=$SCHEMA"

if [[ "${SPLIT_BUILD:-1}" != "0" ]]; then
    swift build --package-path Integrations --product shop-server >&2
fi
BIN=$(swift build --package-path Integrations --show-bin-path)/shop-server

# Each process gets its flags only (SHOP_GRPC_PORT, say, would make both serve gRPC on one port).
for name in $(compgen -e | grep '^SHOP_' || true); do unset "$name"; done

STOCK=()
if [[ -n "${SPLIT_STOCK:-}" ]]; then STOCK=(--stock "$SPLIT_STOCK"); fi
FRONT=("$BIN" --port 0 --grpc-port "$GRPC_PORT" --services user,catalog,inventory --storage "$STORAGE" "${STOCK[@]}")
ORDERS=("$BIN" --port "$HTTP_PORT" --services order,payment,shipping,notification --peer "127.0.0.1:$GRPC_PORT"
    --storage "$STORAGE" "${STOCK[@]}")

"${FRONT[@]}" &
PIDS+=($!)
"${ORDERS[@]}" &
PIDS+=($!)
echo "shop-split: front (user, catalog, inventory; gRPC 127.0.0.1:$GRPC_PORT) is pid ${PIDS[0]}:" >&2
echo "  ${FRONT[*]}" >&2
echo "shop-split: orders (order, payment, shipping, notification; HTTP 127.0.0.1:$HTTP_PORT) is pid ${PIDS[1]}:" >&2
echo "  ${ORDERS[*]}" >&2

if [[ "${1:-}" == "--check" ]]; then
    for _ in $(seq 1 150); do
        if curl -sf "127.0.0.1:$HTTP_PORT/ready" >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
    before=$(curl -sf "127.0.0.1:$HTTP_PORT/stock/cable")
    order=$(curl -sf -X POST "127.0.0.1:$HTTP_PORT/orders" -H 'content-type: application/json' \
        -d "{\"customerId\": 1, \"lines\": [{\"sku\": \"cable\", \"quantity\": 2}], \"reference\": \"check-$$-$RANDOM\"}")
    after=$(curl -sf "127.0.0.1:$HTTP_PORT/stock/cable")
    echo "shop-split --check: stock $before, order $order, stock $after" >&2
    held=$(( $(sed 's/.*"available":\([0-9]*\).*/\1/' <<<"$before") - $(sed 's/.*"available":\([0-9]*\).*/\1/' <<<"$after") ))
    if [[ "$order" != *'"reservationId"'* || $held -ne 2 ]]; then
        echo "shop-split --check: FAILED (the order did not go through both processes)" >&2
        exit 1
    fi
    echo "shop-split --check: ok" >&2
    exit 0
fi
# Until either process ends (or a signal stops the script).
wait -n "${PIDS[@]}"
