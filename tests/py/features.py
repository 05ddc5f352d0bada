"""pynsq against our nsqd: the per-connection features a Reader negotiates in IDENTIFY.

Run by tests/tests/pynsq.rs. Each scenario prints one JSON line; the script exits 1 (with the
reason on stderr) when a scenario does not complete within its deadline. The Rust test makes
the assertions.

- timeout:   msg_timeout=1s; the first delivery is never finished, so nsqd times it out and
             redelivers it (attempts 2); heartbeat_interval=1s, heartbeats are counted.
- touch:     msg_timeout=1s; the handler TOUCHes every 300 ms for 2.5 s, then finishes: no
             redelivery.
- dpub:      Writer.dpub with a 1.5 s delay; the Reader sees it no earlier.
"""

import argparse
import json
import logging
import sys
import time

import nsq
import tornado.gen
import tornado.ioloop


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--nsqd", required=True, help="host:port of nsqd's TCP listener")
    p.add_argument("--scenario", required=True, choices=["timeout", "touch", "dpub"])
    p.add_argument("--topic", required=True)
    p.add_argument("--deadline", type=float, default=30.0)
    return p.parse_args()


async def wait_for(predicate, deadline, what):
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        await tornado.gen.sleep(0.02)


async def publish(args, deadline, bodies, delay_ms=None):
    writer = nsq.Writer([args.nsqd])
    await wait_for(
        lambda: any(c.connected() for c in writer.conns.values()), deadline, "writer"
    )
    results = []
    for body in bodies:
        cb = lambda conn, data: results.append(data)  # noqa: E731
        if delay_ms is None:
            writer.pub(args.topic, body, callback=cb)
        else:
            writer.dpub(args.topic, delay_ms, body, callback=cb)
    await wait_for(lambda: len(results) == len(bodies), deadline, "publish answers")
    errors = [str(r) for r in results if isinstance(r, nsq.Error)]
    if errors:
        raise RuntimeError("publish failed: %s" % errors)
    for conn in list(writer.conns.values()):
        conn.close()


def make_reader(args, handler, **kwargs):
    return nsq.Reader(
        topic=args.topic,
        channel="features",
        message_handler=handler,
        nsqd_tcp_addresses=[args.nsqd],
        max_in_flight=10,
        max_tries=0,
        **kwargs
    )


async def scenario_timeout(args, deadline):
    bodies = [b"t%d" % i for i in range(5)]
    seen = {}  # body -> [(attempts, time)]
    heartbeats = []
    hooked = set()

    def handler(message):
        seen.setdefault(bytes(message.body), []).append((message.attempts, time.time()))
        if message.attempts == 1:
            message.enable_async()  # neither FIN nor REQ: nsqd must time it out
            return None
        return True

    reader = make_reader(args, handler, msg_timeout=1, heartbeat_interval=1)
    await publish(args, deadline, bodies)

    def finished():
        for conn in reader.conns.values():
            if id(conn) not in hooked:
                hooked.add(id(conn))
                conn.on("heartbeat", lambda **kw: heartbeats.append(time.time()))
        return all(len(seen.get(b, [])) >= 2 for b in bodies)

    await wait_for(finished, deadline, "redeliveries after msg_timeout")
    # Stay idle a little so heartbeats show up and any extra delivery would too.
    await tornado.gen.sleep(2.5)
    reader.close()
    return {
        "attempts": sorted({json.dumps([a for a, _ in v]) for v in seen.values()}),
        "min_redelivery_gap": round(
            min(v[1][1] - v[0][1] for v in seen.values() if len(v) > 1), 3
        ),
        "heartbeats": len(heartbeats),
        "connections": len(hooked),
    }


async def scenario_touch(args, deadline):
    seen = []
    done = []

    def handler(message):
        seen.append(message.attempts)
        message.enable_async()
        started = time.time()

        def tick():
            if time.time() - started > 2.5:
                message.finish()
                done.append(time.time() - started)
                return
            message.touch()
            tornado.ioloop.IOLoop.current().call_later(0.3, tick)

        tick()
        return None

    reader = make_reader(args, handler, msg_timeout=1)
    await publish(args, deadline, [b"touched"])
    await wait_for(lambda: done, deadline, "the touched message to finish")
    await tornado.gen.sleep(1.5)
    reader.close()
    return {"attempts": seen, "held_for": round(done[0], 3)}


async def scenario_dpub(args, deadline):
    got = []

    def handler(message):
        got.append((bytes(message.body).decode(), message.attempts, time.time()))
        return True

    reader = make_reader(args, handler)
    sent = time.time()
    await publish(args, deadline, [b"later"], delay_ms=1500)
    await wait_for(lambda: got, deadline, "the deferred message")
    await tornado.gen.sleep(0.5)
    reader.close()
    return {"got": [[b, a] for b, a, _ in got], "delay": round(got[0][2] - sent, 3)}


def main():
    args = parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    scenario = {
        "timeout": scenario_timeout,
        "touch": scenario_touch,
        "dpub": scenario_dpub,
    }[args.scenario]
    deadline = time.time() + args.deadline
    try:
        result = tornado.ioloop.IOLoop.current().run_sync(
            lambda: scenario(args, deadline), timeout=args.deadline + 5
        )
    except Exception as e:  # the Rust test shows this
        print("scenario %s failed: %r" % (args.scenario, e), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
