#!/usr/bin/env python3
"""A minimal OpenAI-style replica that, like uvicorn (vLLM's server), closes kept-alive connections
after a short idle time. Usage: idle_closing_replica.py PORT IDLE_SECONDS ANSWER_DELAY_SECONDS"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, IDLE, DELAY = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE  # an idle kept-alive connection is closed after this

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"status": "ok"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(DELAY)
        self.reply({"object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
