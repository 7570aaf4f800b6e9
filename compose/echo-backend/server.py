"""A tiny backend: GET /health, POST /echo returns the JSON body; --fail exits at once."""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"status": "ok"}) if self.path == "/health" else self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        try:
            self._send(200, {"echo": json.loads(self.rfile.read(length) or b"null")})
        except json.JSONDecodeError:
            self._send(400, {"error": "body is not JSON"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fail", action="store_true", help="exit with an error before serving")
    args = parser.parse_args()
    if args.fail:
        print("echo-backend: failing on purpose", flush=True)
        sys.exit(3)
    print(f"echo-backend listening on {args.port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()
