#!/usr/bin/env python3
"""A minimal OpenAI-style replica that, like uvicorn (vLLM's server), closes kept-alive connections
after a short idle time. Usage: idle_closing_replica.py PORT IDLE_SECONDS ANSWER_DELAY_SECONDS"""
import sys
import time
from http.server import ThreadingHTTPServer

from replica_base import ReplicaHandler

PORT, IDLE, DELAY = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])


class Handler(ReplicaHandler):
    timeout = IDLE  # an idle kept-alive connection is closed after this

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(DELAY)
        self.send_json({"object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
