#!/usr/bin/env python3
"""An OpenAI-style streaming replica that dies in the middle of its answer: after one whole event
it promises a chunk of 100 bytes, sends 30 of them (half an event) and exits, as a server killed
inside a write would. Usage: dying_replica.py PORT"""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        self.wfile.write(b"64\r\n" + b'data: {"choices": [{"index": 0, "de')
        self.wfile.flush()
        os._exit(1)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
