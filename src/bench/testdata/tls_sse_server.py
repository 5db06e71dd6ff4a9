#!/usr/bin/env python3
"""A minimal HTTPS server streaming an OpenAI-style SSE answer, for the TLS test of gpufrac bench
(the synthetic server speaks plain HTTP only). Python's own TLS stack is the independent peer.
Usage: tls_sse_server.py CERT.pem KEY.pem   (prints "listening on 127.0.0.1:PORT")"""
import http.server
import json
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        json.loads(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")  # a close-delimited body, ended by TLS close
        self.end_headers()
        self.wfile.write(b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n')
        for i in range(3):
            chunk = {"choices": [{"delta": {"content": f"t{i} "}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b'data: {"choices":[],"usage":{"prompt_tokens":2,'
                         b'"completion_tokens":3}}\n\ndata: [DONE]\n\n')
        self.close_connection = True

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
