"""The worker process of relay/ingest/offload.py: `python -m relay.ingest.jsworker`.

It reads framed bodies on stdin and answers each with js_reserialise's result (or the
JSONParseError's message) on stdout, one at a time, until stdin ends — which is how the
relay stops it, and what happens when the relay dies. It imports nothing else of the
relay's, to stay small (about 14 MB).
"""

from __future__ import annotations

import signal
import struct
import sys
from typing import BinaryIO

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise

REQUEST = struct.Struct(">I")  # the body's length, then the body
ANSWER = struct.Struct(">BI")  # OK or PARSE_ERROR, the payload's length, then the payload
OK, PARSE_ERROR = 0, 1


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer frames until the input ends."""
    while True:
        head = requests.read(REQUEST.size)
        if len(head) < REQUEST.size:
            return
        (length,) = REQUEST.unpack(head)
        body = requests.read(length)
        if len(body) < length:
            return
        try:
            kind, payload = OK, js_reserialise(body)
        except JSONParseError as error:
            kind, payload = PARSE_ERROR, str(error).encode()
        answers.write(ANSWER.pack(kind, len(payload)))
        answers.write(payload)
        answers.flush()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group; the relay decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
