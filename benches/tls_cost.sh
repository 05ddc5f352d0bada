#!/usr/bin/env bash
# PUB (MPUB 200 x 200 B), SUB and connections/s over TLS vs plain, our nsqd and NSQ's, with
# nsq_bench (--tls upgrades every connection via IDENTIFY tls_v1). Alternating rounds.
set -euo pipefail
REF=${NSQ_REFERENCE_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/shared/nsq-reference/bin}
OURS=${1:?usage: tls-cost.sh OUR_NSQD NSQ_BENCH}; BENCH=${2:?}
ROUNDS=${ROUNDS:-1}; RUNFOR=${RUNFOR:-5}
work=$(mktemp -d); pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 1 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout key.pem -out req.pem -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in req.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 1 -extfile ext.cnf 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rate() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(json.dumps(d))'; }
server() { # label binary
  local label=$1 bin=$2 tcp http https d
  tcp=$(port); http=$(port); https=$(port); d=$(mktemp -d -p "$work")
  "$bin" --data-path "$d" --tcp-address "127.0.0.1:$tcp" --http-address "127.0.0.1:$http" \
    --https-address "127.0.0.1:$https" --broadcast-address 127.0.0.1 \
    --tls-cert cert.pem --tls-key key.pem >"$d.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$http/ping" && break; sleep 0.1; done
  curl -sf -X POST "http://127.0.0.1:$http/topic/create?topic=sub_bench" >/dev/null || { cat "$d.log"; exit 1; }
  curl -sf -X POST "http://127.0.0.1:$http/channel/create?topic=sub_bench&channel=ch" >/dev/null
  for tls in plain tls; do
    local t=(); [ $tls = tls ] && t=(--tls --tls-root-ca-file ca.pem)
    for mode in writer reader connect; do
      local run=$RUNFOR; [ $mode != writer ] && run=3
      out=$("$BENCH" "$mode" --nsqd-tcp-address "127.0.0.1:$tcp" --size 200 --batch-size 200 --runfor "$run" --json "${t[@]}" 2>&1 | tail -1 || true)
      echo "$label $tls $mode $out" | tee -a results
    done
  done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
}
for r in $(seq 1 "$ROUNDS"); do
  server nsq "$REF/nsqd"
  server ours "$OURS"
done
