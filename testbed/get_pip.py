"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test bootstraps pip in each sanity virtual environment with a get-pip script
fetched from the internet. On air-gapped machines `make sanity` installs this file in
its cache instead: it bootstraps pip with the standard library's ensurepip and then runs
`pip install` with the arguments ansible-test passes (package index access through the
local mirror configuration, as for any other pip call).
"""

import os
import subprocess
import sys


def main():
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    cert = '/etc/ssl/certs/ca-certificates.crt'
    if os.path.exists(cert):
        args = ['--cert', cert] + args
    sys.exit(subprocess.run([sys.executable, '-m', 'pip', 'install'] + args, check=False).returncode)


if __name__ == '__main__':
    main()
