"""What the Python test replicas share: HTTP/1.1 with keep-alive, no access log, a JSON answer
helper, and a health route that always answers 200."""
import json
from http.server import BaseHTTPRequestHandler


class ReplicaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_json({"status": "ok"})
