"""moto's server (as `moto_server -H HOST -p PORT` starts it), with DynamoDB requests
handled one at a time.

DynamoDB applies a conditional write to an item atomically: of two writes conditioned on
the same version, one wins and the other fails its condition. moto's server handles each
request on its own thread and checks a condition and writes without a lock, so under CPU
load two such writes can both succeed (measured: 1 round in 150 of 24 concurrent
conditional PutItems on a loaded 2-core machine). The contract tests prove that
concurrent stream writers lose nothing, which only means something against a store that
keeps DynamoDB's guarantee. Every other service (SQS long polls included) stays
concurrent, as in moto.

Usage: python tests/moto_server.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            # The whole answer is produced under the lock: the write is done when it ends.
            return [b"".join(app(environ, start_response))]

    run_simple(
        host,
        port,
        serialized,
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
