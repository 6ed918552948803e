"""A gRPC test client (grpcio, raw bytes) for tests/grpc/server.py through certgate.

    client.py TARGET [--ca CA --cert CERT --key KEY --name NAME] [--meta k=v ...] CALL...

Without --ca the channel is h2c; with it, TLS (ALPN h2) presenting --cert/--key when given.
Each CALL prints one JSON line: {"call", "code", "details", "value"}; `value` is the response
(a list for streaming responses) as text. Calls: unary split join chat fail slow whoami.
"""

import argparse
import json

import grpc


def text(b):
    return b.decode("latin-1")


def run(channel, call, meta):
    ident = lambda b: b  # noqa: E731
    m = lambda name: f"/test.Echo/{name}"  # noqa: E731
    kw = dict(request_serializer=ident, response_deserializer=ident)
    if call == "unary":
        return text(channel.unary_unary(m("Unary"), **kw)(b"hello", metadata=meta, timeout=10))
    if call == "split":
        return [text(r) for r in channel.unary_stream(m("Split"), **kw)(b"abc", metadata=meta, timeout=10)]
    if call == "join":
        return text(channel.stream_unary(m("Join"), **kw)(iter([b"x", b"y", b"z"]), metadata=meta, timeout=10))
    if call == "chat":
        return [text(r) for r in channel.stream_stream(m("Chat"), **kw)(iter([b"one", b"two", b"three"]), metadata=meta, timeout=10)]
    if call == "fail":
        return text(channel.unary_unary(m("Fail"), **kw)(b"", metadata=meta, timeout=10))
    if call == "slow":
        return text(channel.unary_unary(m("Slow"), **kw)(b"late", metadata=meta, timeout=0.5))
    if call == "whoami":
        return json.loads(channel.unary_unary(m("Whoami"), **kw)(b"", metadata=meta, timeout=10))
    raise SystemExit(f"unknown call {call}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--name", default="localhost")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("calls", nargs="+")
    args = p.parse_args()
    meta = [tuple(kv.split("=", 1)) for kv in args.meta]
    if args.ca:
        read = lambda path: open(path, "rb").read() if path else None  # noqa: E731
        creds = grpc.ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))
        opts = [("grpc.ssl_target_name_override", args.name)]
        channel = grpc.secure_channel(args.target, creds, options=opts)
    else:
        channel = grpc.insecure_channel(args.target)
    for call in args.calls:
        out = {"call": call, "code": "OK", "details": "", "value": None}
        try:
            out["value"] = run(channel, call, meta)
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
