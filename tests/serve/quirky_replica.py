#!/usr/bin/env python3
"""An OpenAI-style replica that answers in legal but unusual HTTP, one way per MODE, to check that
the gateway relays it without mixing up answers. Each answer echoes the request's max_tokens as
"tag", so a client can tell whose answer it got.
  early-hints  a 103 Early Hints interim response before each 200, and a stray CRLF after the
               body (keep-alive, so both are on a connection the gateway may pool);
  bare-lf      status line and headers ended by a bare LF;
  firehose     an event stream of 64 KiB events with no pause, until the connection breaks.
Usage: quirky_replica.py PORT MODE"""
import json
import sys
from http.server import ThreadingHTTPServer

from replica_base import ReplicaHandler

PORT = int(sys.argv[1])
MODE = sys.argv[2]


class Handler(ReplicaHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        body = json.dumps({"object": "chat.completion", "tag": request.get("max_tokens"),
                           "choices": [{"index": 0, "message": {"role": "assistant",
                                                                "content": "hi"}}]}).encode()
        if MODE == "early-hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body + b"\r\n")
        elif MODE == "bare-lf":
            self.wfile.write(b"HTTP/1.1 200 OK\nContent-Type: application/json\n"
                             b"Content-Length: %d\n\n%s" % (len(body), body))
        elif MODE == "firehose":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * 65536 + \
                b'"}}]}\n\n'
            chunk = b"%x\r\n%s\r\n" % (len(event), event)
            try:
                while True:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except OSError:
                self.close_connection = True


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
