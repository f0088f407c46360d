"""The stack role's HTTP health check: every URL answers 200 within TIMEOUT seconds.

    http_health.py TIMEOUT SERVICE=URL...

Prints a JSON report ({"ok": bool, "failed": [{"service", "url", "error"}]}); exits 1 when a URL never answered 200.
"""

import json
import sys
import time
import urllib.request


def probe(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # nosec - loopback URLs of the stack
            return None if answer.status == 200 else 'HTTP %s' % answer.status
    except Exception as exc:  # pylint: disable=broad-except
        return str(exc)


def main():
    deadline = time.time() + int(sys.argv[1])
    waiting = dict(arg.split('=', 1) for arg in sys.argv[2:])
    errors = {}
    while waiting:
        for service, url in sorted(waiting.items()):
            error = probe(url)
            if error is None:
                del waiting[service]
                errors.pop(service, None)
            else:
                errors[service] = error
        if not waiting or time.time() > deadline:
            break
        time.sleep(3)
    failed = [{'service': service, 'url': url, 'error': errors.get(service, '')} for service, url in sorted(waiting.items())]
    print(json.dumps({'ok': not failed, 'failed': failed}))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
