"""pynsq against our nsqd: a Writer publishes (PUB and MPUB), a Reader receives.

Run by tests/tests/pynsq.rs. Prints one JSON line with what happened and exits 0, or exits 1
with the reason on stderr when the deadline passes first. The Rust test makes the assertions.

The Reader's handler fails (returns False, so pynsq sends REQ) every delivery whose attempt
number is at most --fail-attempts, so with --fail-attempts 2 each message must be seen with
attempts 1, 2 and 3 and finished on the third.
"""

import argparse
import json
import logging
import ssl
import sys
import time

import nsq
import tornado.ioloop


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--nsqd", required=True, help="host:port of nsqd's TCP listener")
    p.add_argument("--topic", required=True)
    p.add_argument("--channel", default="pynsq")
    p.add_argument("--count", type=int, default=100, help="messages; half PUB, half MPUB")
    p.add_argument("--mpub-batch", type=int, default=10)
    p.add_argument("--max-in-flight", type=int, default=10)
    p.add_argument("--fail-attempts", type=int, default=0)
    p.add_argument(
        "--backoff",
        action="store_true",
        help="fail by returning False (REQ plus pynsq's backoff: RDY 0, then RDY 1)",
    )
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--snappy", action="store_true")
    p.add_argument("--tls-ca", help="upgrade to TLS (tls_v1), trusting this CA file")
    p.add_argument("--tls-cert", help="client certificate for TLS")
    p.add_argument("--tls-key", help="client certificate key for TLS")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds")
    return p.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = tornado.ioloop.IOLoop.current()
    conn_kwargs = {}
    if args.deflate:
        conn_kwargs["deflate"] = True
        conn_kwargs["deflate_level"] = 6
    if args.snappy:
        conn_kwargs["snappy"] = True
    if args.tls_ca:
        conn_kwargs["tls_v1"] = True
        tls_options = {"ca_certs": args.tls_ca, "cert_reqs": ssl.CERT_REQUIRED}
        if args.tls_cert:
            tls_options["certfile"] = args.tls_cert
            tls_options["keyfile"] = args.tls_key
        conn_kwargs["tls_options"] = tls_options

    bodies = [("msg-%05d" % i).encode() for i in range(args.count)]
    half = args.count // 2
    state = {
        "published_ok": 0,
        "publish_errors": [],
        "deliveries": 0,
        "finished": set(),
        "attempts": {},  # body -> list of attempt numbers seen, in order
        "unexpected": [],
        "done_at": None,
        "negotiated": {},
    }

    def on_pub(conn, data, n=1):
        if isinstance(data, nsq.Error):
            state["publish_errors"].append(str(data))
        else:
            state["published_ok"] += n

    writer = nsq.Writer([args.nsqd], **conn_kwargs)

    def handler(message):
        body = bytes(message.body)
        state["deliveries"] += 1
        if body not in bodies_set:
            state["unexpected"].append(body.decode(errors="replace"))
            return True
        state["attempts"].setdefault(body, []).append(message.attempts)
        if message.attempts <= args.fail_attempts:
            if args.backoff:
                return False  # pynsq answers REQ and backs off
            # REQ without pynsq's backoff (which would pause the whole Reader each time).
            message.enable_async()
            message.requeue(backoff=False, delay=0)
            return None
        state["finished"].add(body)
        return True

    bodies_set = set(bodies)
    reader = nsq.Reader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.nsqd],
        max_in_flight=args.max_in_flight,
        # No REQ delay and short backoff keep the test quick; attempts still grow.
        requeue_delay=0,
        max_backoff_duration=0.5,
        max_tries=0,
        **conn_kwargs
    )

    started = time.time()
    published = {"started": False}

    def publish_all():
        # The Writer connects asynchronously; publish once it has a live connection.
        if not any(c.connected() for c in writer.conns.values()):
            return
        published["started"] = True
        for body in bodies[:half]:
            writer.pub(args.topic, body, callback=on_pub)
        rest = bodies[half:]
        for i in range(0, len(rest), args.mpub_batch):
            batch = rest[i : i + args.mpub_batch]
            writer.mpub(
                args.topic, batch, callback=lambda c, d, n=len(batch): on_pub(c, d, n)
            )

    def check():
        for conn in list(reader.conns.values()):
            state["negotiated"] = {
                "deflate": bool(getattr(conn, "deflate", False)),
                "snappy": bool(getattr(conn, "snappy", False)),
            }
        if not published["started"]:
            publish_all()
        if state["publish_errors"] or time.time() - started > args.deadline:
            finish(ok=False)
            return
        if len(state["finished"]) == args.count and state["published_ok"] == args.count:
            # Linger briefly so a duplicate delivery would show up in the counts.
            if state["done_at"] is None:
                state["done_at"] = time.time()
            elif time.time() - state["done_at"] > 0.5:
                finish(ok=True)

    def finish(ok):
        periodic.stop()
        attempts = state["attempts"]
        result = {
            "ok": ok,
            "published_ok": state["published_ok"],
            "publish_errors": state["publish_errors"],
            "deliveries": state["deliveries"],
            "finished": len(state["finished"]),
            "missing": sorted(b.decode() for b in bodies_set - state["finished"])[:10],
            "unexpected": state["unexpected"][:10],
            "attempt_sequences": sorted(
                {json.dumps(v) for v in attempts.values()}
            ),
            "negotiated": state["negotiated"],
            "elapsed": round(time.time() - started, 3),
        }
        print(json.dumps(result), flush=True)
        if not ok:
            print("pynsq round trip did not complete: %s" % result, file=sys.stderr)
        reader.close()
        for conn in list(writer.conns.values()):
            conn.close()
        state["exit"] = 0 if ok else 1
        loop.add_callback(loop.stop)

    periodic = tornado.ioloop.PeriodicCallback(check, 50)
    periodic.start()
    loop.start()
    sys.exit(state.get("exit", 1))


if __name__ == "__main__":
    main()
