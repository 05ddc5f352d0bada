"""A pynsq Reader that finds nsqd only through nsqlookupd.

Run by tests/tests/discovery.rs. Prints one line per message received (its body) on stdout,
flushed at once, and FINs it; runs until killed. --poll is pynsq's lookupd_poll_interval.
"""

import argparse
import logging
import sys

import nsq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lookupd", action="append", required=True, help="http://host:port")
    p.add_argument("--topic", required=True)
    p.add_argument("--channel", default="discovery")
    p.add_argument("--poll", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def handler(message):
        sys.stdout.write(message.body.decode() + "\n")
        sys.stdout.flush()
        return True

    nsq.Reader(
        message_handler=handler,
        lookupd_http_addresses=args.lookupd,
        lookupd_poll_interval=args.poll,
        lookupd_poll_jitter=0.1,
        topic=args.topic,
        channel=args.channel,
        max_in_flight=10,
    )
    nsq.run()


if __name__ == "__main__":
    main()
