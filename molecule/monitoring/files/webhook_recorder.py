"""Appends every POSTed JSON body, with the path it arrived on, as one line to a file.

Stands in for real notification receivers in the monitoring scenario.
Usage: webhook_recorder.py ADDRESS PORT FILE
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder(BaseHTTPRequestHandler):
    out_file = ""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with open(self.out_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": self.path, "body": body}) + "\n")
        self.send_response(200)
        self.end_headers()


def main() -> None:
    address, port, out_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Recorder.out_file = out_file
    ThreadingHTTPServer((address, port), Recorder).serve_forever()


if __name__ == "__main__":
    main()
