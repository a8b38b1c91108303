#!/usr/bin/env bash
# Install everything the suite needs on a fresh Debian 12 machine of this kind:
# system packages, the venv, and the Ansible collections a checkout uses.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the browser the dashboard tests drive through Playwright (its own browser download
# cannot work here, and would be a second browser to keep up to date).
# python3-venv: Debian keeps venv's ensurepip apart (the venv below and `make sanity` need it).
APT_PACKAGES=(python3 python3-venv podman runc catatonit debootstrap openssh-client pssh clustershell chromium)
VENV=.venv
# Only for molecule's podman driver; jexida.cluster itself comes from the venv (below).
COLLECTIONS=.cache/collections/ansible_collections
# containers.podman (molecule's podman driver) comes from the PyPI `ansible` package:
# Galaxy is not reachable from here.
ANSIBLE_BUNDLE='ansible>=12,<13'

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    python3 -m venv "$VENV"
fi
stamp=.cache/pip.stamp
mkdir -p .cache
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    echo "setup: installing the package and its dev tools into $VENV"
    # compat mode puts the checkout on the Python path; the collection is linked in below,
    # where an installed wheel puts it (setuptools' default editable finder would shadow it).
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
    touch "$stamp"
fi

# This checkout is the collection jexida.cluster, on the venv's Python path exactly where the
# wheel installs it: `ansible-doc`, `ansible-playbook jexida.cluster.bootstrap` and the bridge
# find it with no configuration.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site/ansible_collections/jexida"
ln -sfn "$PWD" "$site/ansible_collections/jexida/cluster"

if [ ! -f "$COLLECTIONS/containers/podman/MANIFEST.json" ]; then
    echo "setup: extracting containers.podman from the PyPI ansible package"
    wheels=$(mktemp -d)
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "$ANSIBLE_BUNDLE" -d "$wheels"
    "$VENV/bin/python" - "$wheels" "$COLLECTIONS/.." <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("ansible-*.whl"))
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as zf:
    zf.extractall(sys.argv[2], [n for n in zf.namelist() if n.startswith(prefix)])
PY
    rm -rf "$wheels"
fi
# An outside MCP client for the tests: the MCP Inspector CLI, pinned, in a cache folder.
INSPECTOR_VERSION=2.12.0
if [ ! -x .cache/npm/node_modules/.bin/mcp-inspector ] || \
   ! grep -q "\"version\": \"$INSPECTOR_VERSION\"" .cache/npm/node_modules/@modelcontextprotocol/inspector/package.json 2>/dev/null; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: installing nodejs and npm (for the MCP Inspector)"
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "setup: installing the MCP Inspector $INSPECTOR_VERSION into .cache/npm"
    npm install --silent --no-fund --no-audit --prefix .cache/npm "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >/dev/null
fi
# The Inspector needs Node >= 22 (Debian 12 ships 18): the npm package `node` brings a pinned one
# from the same registry, linked into the venv, whose bin folder comes first on the tests' PATH.
NODE_VERSION=22.23.3
# The system's node, not the venv's link (make puts the venv first on PATH).
system_node=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$PWD/$VENV/bin" | paste -sd:) command -v node || true)
if [ "$("$VENV/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ] && \
   [ "$("${system_node:-false}" -p 'process.versions.node.split(".")[0] >= 22' 2>/dev/null)" != true ]; then
    echo "setup: installing Node $NODE_VERSION into .cache/node (the system's is older than 22)"
    npm install --silent --no-fund --no-audit --prefix .cache/node "node@$NODE_VERSION" >/dev/null
    ln -sfn "$PWD/.cache/node/node_modules/node/bin/node" "$VENV/bin/node"
fi
echo "setup: ready"
