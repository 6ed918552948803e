"""A gRPC test server (grpcio, generic handlers, raw bytes: no protoc needed).

Serves `test.Echo` on 127.0.0.1 (h2c, or TLS with --cert/--key), prints `PORT <n>` once
listening, and runs until killed.

Methods (requests and responses are raw bytes):
  Unary    echoes the request
  Split    server streaming: one response per byte of the request
  Join     client streaming: the requests concatenated
  Chat     bidirectional: each request upper-cased, as it arrives
  Fail     aborts with NOT_FOUND "no such thing"
  Slow     answers after 3 s
  Whoami   the request metadata as JSON
"""

import argparse
import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    return request


def split(request, context):
    for b in request:
        yield bytes([b])


def join(requests, context):
    return b"".join(requests)


def chat(requests, context):
    for r in requests:
        yield r.upper()


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    time.sleep(3)
    return request


def whoami(request, context):
    seen = {}
    for k, v in context.invocation_metadata():
        seen.setdefault(k, []).append(v if isinstance(v, str) else v.decode("latin-1"))
    return json.dumps(seen).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args()
    ident = lambda b: b  # noqa: E731
    h = grpc.unary_unary_rpc_method_handler
    handlers = {
        "Unary": h(unary, ident, ident),
        "Split": grpc.unary_stream_rpc_method_handler(split, ident, ident),
        "Join": grpc.stream_unary_rpc_method_handler(join, ident, ident),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, ident, ident),
        "Fail": h(fail, ident, ident),
        "Slow": h(slow, ident, ident),
        "Whoami": h(whoami, ident, ident),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", handlers),)
    )
    if args.cert:
        with open(args.cert, "rb") as c, open(args.key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
