"""A small HTTP service that holds as much real memory as it is told to.

The test bed's stand-in for the platform's backend, frontend and agent containers.
  GET  /health            200 {"status": "ok", "held_mb": N} (503 once told to be unhealthy);
                          /healthz and /readyz answer the same (the qdrant stand-in)
  POST /hold?mb=N         hold N MB of touched memory (replaces what was held); GET works too
  POST /release           hold nothing
  POST /ramp?step_mb=S&interval=T&max_mb=M
                          grow by S MB every T seconds up to M MB (a steady leak)
  POST /unhealthy, POST /healthy
                          make /health answer 503 / 200
Environment: PORT (default 8080), HOLD_MB (held from start-up, default 0).
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PAGE = 4096
MB = 1024 * 1024


class Memory:
    """The memory the service holds: a list of 1 MB chunks whose pages are all written."""

    def __init__(self):
        self.lock = threading.Lock()
        self.chunks = []
        self.ramp_stop = threading.Event()
        self.healthy = True

    @staticmethod
    def _chunk():
        buf = bytearray(MB)
        buf[::PAGE] = b'\x01' * (MB // PAGE)  # touch every page so it is resident
        return buf

    def hold(self, megabytes):
        """Hold exactly `megabytes` MB."""
        with self.lock:
            del self.chunks[megabytes:]
            while len(self.chunks) < megabytes:
                self.chunks.append(self._chunk())

    def held_mb(self):
        """How many MB are held now."""
        return len(self.chunks)

    def ramp(self, step_mb, interval, max_mb):
        """Grow by step_mb every interval seconds until max_mb (in a thread)."""
        self.ramp_stop.set()
        stop = threading.Event()
        self.ramp_stop = stop

        def grow():
            while not stop.is_set() and self.held_mb() < max_mb:
                self.hold(min(max_mb, self.held_mb() + step_mb))
                stop.wait(interval)

        threading.Thread(target=grow, daemon=True).start()


MEMORY = Memory()


class Handler(BaseHTTPRequestHandler):
    """Routes of the service."""

    server_version = 'sutazai-memhog/1.0'

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _params(self):
        query = parse_qs(urlparse(self.path).query)
        return {key: values[-1] for key, values in query.items()}

    def _number(self, params, key, default, kind=int):
        try:
            return kind(params.get(key, default))
        except ValueError:
            self._reply(400, {'error': '%s must be a number, got %r' % (key, params.get(key))})
            return None

    def do_GET(self):  # pylint: disable=invalid-name
        """Health, or the hold/ramp controls for convenience with curl."""
        route = urlparse(self.path).path
        if route in ('/health', '/healthz', '/readyz', '/'):
            status = 200 if MEMORY.healthy else 503
            self._reply(status, {'status': 'ok' if MEMORY.healthy else 'unhealthy', 'held_mb': MEMORY.held_mb()})
        elif route in ('/hold', '/release', '/ramp', '/healthy', '/unhealthy'):
            self.do_POST()
        else:
            self._reply(404, {'error': 'no route %s' % route})

    def do_POST(self):  # pylint: disable=invalid-name
        """Memory and health controls."""
        route = urlparse(self.path).path
        params = self._params()
        if route == '/hold':
            megabytes = self._number(params, 'mb', 0)
            if megabytes is None:
                return
            MEMORY.ramp_stop.set()
            MEMORY.hold(max(0, megabytes))
        elif route == '/release':
            MEMORY.ramp_stop.set()
            MEMORY.hold(0)
        elif route == '/ramp':
            step = self._number(params, 'step_mb', 10)
            interval = self._number(params, 'interval', 0.1, float)
            maximum = self._number(params, 'max_mb', 1024)
            if None in (step, interval, maximum):
                return
            MEMORY.ramp(step, interval, maximum)
        elif route in ('/healthy', '/unhealthy'):
            MEMORY.healthy = route == '/healthy'
        else:
            self._reply(404, {'error': 'no route %s' % route})
            return
        self._reply(200, {'held_mb': MEMORY.held_mb(), 'healthy': MEMORY.healthy})

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write('%s %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%S'), format % args))


def main():
    """Serve until SIGTERM."""
    MEMORY.hold(int(os.environ.get('HOLD_MB', '0') or 0))
    server = ThreadingHTTPServer(('0.0.0.0', int(os.environ.get('PORT', '8080'))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == '__main__':
    main()
