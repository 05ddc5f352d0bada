#!/usr/bin/env bash
# Our nsqd with observability all off vs all on (statsd at 1 s to an unread UDP port,
# e2e percentiles 0.99,0.95, /metrics scraped every second), alternating rounds, NSQ's
# bench_writer (MPUB 200 x 200 B) and bench_reader as in side-by-side.sh.
set -euo pipefail
REF=${NSQ_REFERENCE_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/shared/nsq-reference/bin}
OURS=${1:?usage: obs-cost.sh OUR_NSQD [common flags...]}; shift
ROUNDS=${ROUNDS:-3}; RUNFOR=${RUNFOR:-8}; SIZE=200; BATCH=200
work=$(mktemp -d); pid=""; scraper=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; [ -n "$scraper" ] && kill "$scraper" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ops() { grep -oE '[0-9.]+ops/s' | tail -1 | sed 's#ops/s##'; }
one() { # label scrape(0/1) flags...
  local label=$1 scrape=$2; shift 2
  local tcp http d; tcp=$(port); http=$(port); d=$(mktemp -d -p "$work")
  "$OURS" --data-path "$d" --tcp-address "127.0.0.1:$tcp" --http-address "127.0.0.1:$http" \
    --broadcast-address 127.0.0.1 "$@" >"$d.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$http/ping" && break; sleep 0.1; done
  curl -sf -X POST "http://127.0.0.1:$http/topic/create?topic=sub_bench" >/dev/null
  curl -sf -X POST "http://127.0.0.1:$http/channel/create?topic=sub_bench&channel=ch" >/dev/null
  if [ "$scrape" = 1 ]; then
    ( while sleep 1; do curl -sf -o /dev/null "http://127.0.0.1:$http/metrics"; done ) &
    scraper=$!
  fi
  local pub sub
  pub=$("$REF/bench_writer" --nsqd-tcp-address "127.0.0.1:$tcp" --size "$SIZE" --batch-size "$BATCH" --runfor "${RUNFOR}s" 2>&1 | ops)
  sub=$("$REF/bench_reader" --nsqd-tcp-address "127.0.0.1:$tcp" --size "$SIZE" --channel ch --runfor 3s 2>&1 | ops)
  [ -n "$scraper" ] && { kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true; scraper=""; }
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
  echo "$label ${pub:-0} ${sub:-0}" | tee -a "$work/results"
}
UDP=$(port)  # nobody listens: datagrams are dropped by the kernel, as to an idle statsd
for r in $(seq 1 "$ROUNDS"); do
  one off 0 "$@"
  one on 1 "$@" --statsd-address "127.0.0.1:$UDP" --statsd-interval 1s \
    --e2e-processing-latency-percentile 0.99,0.95
done
python3 - "$work/results" <<'PY'
import sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    label, pub, sub = line.split()
    rows.setdefault(label, []).append((float(pub), float(sub)))
m = {k: [st.median(x[i] for x in v) for i in range(2)] for k, v in rows.items()}
for k in ("off", "on"):
    print("median msgs/s  %-3s  PUB %10.0f  SUB %10.0f" % (k, m[k][0], m[k][1]))
print("on / off           PUB %9.3fx  SUB %9.3fx" % (m["on"][0] / m["off"][0], m["on"][1] / m["off"][1]))
PY
