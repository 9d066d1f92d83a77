#!/usr/bin/env python3
"""An SMTP server for tests that keeps what it receives (aiosmtpd).

Each accepted message is written as DIR/NNNNNN.eml (the bytes exactly as
received, after SMTP dot-unstuffing) with DIR/NNNNNN.json beside it:
{"mail_from", "rcpt_tos", "peer_port"} (peer_port tells connections apart).

Fault plan: --fail-first N --fail-code CODE [--fail-text TEXT] answers the
end of DATA of the first N messages with CODE instead of 250; --fail-rcpt
ADDRESS answers RCPT TO for that address with --fail-code.

TLS: --cert/--key with --starttls (offer STARTTLS) or --implicit-tls.
AUTH: --auth USER:PASSWORD requires AUTH PLAIN/LOGIN with those credentials.

QUIT: with --quit-log FILE, every QUIT a client sends appends one JSON
line {"peer_port"} to FILE (so tests can see a client say goodbye).

Prints READY on stdout once it accepts connections (the harness waits for
that line); stops on SIGTERM.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, args):
        self.dir = args.dir
        self.fail_first = args.fail_first
        self.fail_code = args.fail_code
        self.fail_text = args.fail_text
        self.fail_rcpt = args.fail_rcpt
        self.quit_log = args.quit_log
        self.lock = threading.Lock()
        self.seen = 0
        self.stored = len([n for n in os.listdir(self.dir) if n.endswith(".eml")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.fail_rcpt and address == self.fail_rcpt:
            return f"{self.fail_code} {self.fail_text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        if self.quit_log:
            with self.lock, open(self.quit_log, "a") as log:
                log.write(json.dumps({"peer_port": session.peer[1]}) + "\n")
        return "221 Bye"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.seen += 1
            if self.seen <= self.fail_first:
                return f"{self.fail_code} {self.fail_text}"
            self.stored += 1
            number = self.stored
        base = os.path.join(self.dir, f"{number:06d}")
        with open(base + ".json.tmp", "w") as meta:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "peer_port": session.peer[1],
                },
                meta,
            )
        with open(base + ".eml.tmp", "wb") as eml:
            eml.write(envelope.original_content)
        # The .eml appears last and whole: a reader that sees it sees both.
        os.rename(base + ".json.tmp", base + ".json")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK stored"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-code", type=int, default=451)
    parser.add_argument("--fail-text", default="4.3.0 fault plan says no")
    parser.add_argument("--fail-rcpt")
    parser.add_argument("--quit-log")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    args = parser.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {}
    if args.starttls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    if args.implicit_tls:
        kwargs["ssl_context"] = context
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd itself answers 535 on failure.
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_require_tls"] = bool(args.starttls or args.implicit_tls)
        kwargs["auth_required"] = True

    controller = Controller(
        Sink(args),
        hostname="127.0.0.1",
        port=args.port,
        ready_timeout=10,
        **kwargs,
    )
    controller.start()
    # The harness waits for this line: the server is accepting connections.
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
