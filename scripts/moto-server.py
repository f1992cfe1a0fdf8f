#!/usr/bin/env python3
"""moto's server with one request handled at a time.

AWS applies each request atomically (a DynamoDB conditional write either sees the previous
write or fails its condition). moto's threaded server does not: concurrent requests interleave
inside its in-memory backends, so concurrent conditional writes can both succeed and
TransactWriteItems can crash ("dictionary changed size during iteration"). Serialising request
handling restores the per-request atomicity the real services guarantee, while connections are
still accepted concurrently, so the tests' parallel clients behave as they would against AWS.

Usage: moto-server.py HOST PORT
"""

import os
import sys
import threading

from werkzeug import serving
from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            result = app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]

    # The tests open a thousand connections at once; werkzeug's default listen backlog (128)
    # overflows and the kernel resets the excess connections, which reached the tests as
    # "connection reset by peer". AWS endpoints never refuse a client for that reason.
    serving.BaseWSGIServer.request_queue_size = 4096
    run_simple(host, port, serialized, threaded=True)


if __name__ == "__main__":
    main()
