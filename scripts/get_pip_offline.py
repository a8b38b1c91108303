"""Offline stand-in for get-pip.py, used by scripts/sanity.sh.

ansible-test bootstraps pip into every sanity-test virtual environment (made with
`venv --without-pip`) by running a get-pip.py script that it downloads from Ansible's CI
file server and caches as ~/.ansible/test/cache/get_pip_<version>.py. Where that server is
out of reach, the download fails and so does every sanity test that needs a package; so
sanity.sh puts this file in the cache instead.

It is run the way get-pip.py is: `python get_pip_X_Y.py [pip options] pip==X.Y
[--no-setuptools] [--no-wheel]`, with the new virtual environment's python. It installs
the pip wheel that the interpreter ships with (ensurepip, no network), then lets that pip
install the requested packages (the pinned pip) from the configured package index.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def run(*argv: str) -> None:
    # Quiet unless it fails, as ansible-test shows everything a bootstrap prints.
    done = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stdout)
        sys.exit(done.returncode)


def main() -> None:
    args = sys.argv[1:]
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY]
    run("-m", "ensurepip", "--upgrade", "--default-pip")
    run("-m", "pip", "install", "--upgrade", *pip_args)
    # ensurepip on Python < 3.12 also installs setuptools; get-pip.py leaves it out when asked.
    if "--no-setuptools" in args:
        run("-m", "pip", "uninstall", "--yes", "--quiet", "setuptools")


if __name__ == "__main__":
    main()
