#!/usr/bin/env python3
"""An OpenAI-style streaming replica whose answers end badly, one way per MODE:
  inside-chunk  (the default) after one whole event it promises a chunk of 100 bytes, sends 30 of
                them (half an event) and exits, as a server killed inside a write would;
  chunked-between
                one whole event in a chunk, then it exits;
  unframed-between
                the stream is framed by the connection's close alone (no length, not chunked):
                one whole event, then it exits;
  unframed-inside
                the same, but it exits in the middle of the second event;
  unframed-whole
                one whole event, a finish_reason chunk and [DONE], then the close that ends it;
                it stays up.
Usage: dying_replica.py PORT [MODE]"""
import os
import sys
from http.server import ThreadingHTTPServer

from replica_base import ReplicaHandler

PORT = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "inside-chunk"
FIRST = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
HALF = b'data: {"choices": [{"index": 0, "de'
LAST = (b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
        b"data: [DONE]\n\n")


class Handler(ReplicaHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if MODE in ("inside-chunk", "chunked-between"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(FIRST), FIRST))
            if MODE == "inside-chunk":
                self.wfile.write(b"64\r\n" + HALF)
            self.wfile.flush()
            os._exit(1)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(FIRST)
        self.wfile.flush()
        if MODE == "unframed-whole":
            self.wfile.write(LAST)
            self.close_connection = True
            return
        if MODE == "unframed-inside":
            self.wfile.write(HALF)
            self.wfile.flush()
        os._exit(1)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
