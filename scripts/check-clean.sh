#!/usr/bin/env bash
# `check-clean.sh start NAME` before a run, `check-clean.sh end NAME` after it: the run must
# leave the checkout as it was (no state in tracked paths, no stray lock files), and the test
# run must write nothing into the person's own ~/.ansible, ~/.ansible_async or ~/.config/jexida.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=$1 name=$2
mark=.cache/clean-check-$name
mkdir -p .cache
watched=()
if [ "$name" = test ]; then
    # HOME and the passwd entry's home: Ansible expands ~ in remote_tmp on the controller as ~<user>.
    for home in "$HOME" "$(getent passwd "$(id -u)" | cut -d: -f6)"; do
        for dir in "$home/.ansible" "$home/.ansible_async" "$home/.config/jexida"; do
            [[ " ${watched[*]-} " == *" $dir "* ]] || watched+=("$dir")
        done
    done
fi
if [ "$phase" = start ]; then
    git status --porcelain --untracked-files=all > "$mark.status"
    touch "$mark.stamp"
    exit 0
fi
problems=0
if ! diff <(git status --porcelain --untracked-files=all) "$mark.status" > "$mark.diff"; then
    echo "check-clean: '$name' changed the checkout (git status before vs after):" >&2
    cat "$mark.diff" >&2
    problems=1
fi
for dir in ${watched[@]+"${watched[@]}"}; do
    if [ -d "$dir" ] && [ -n "$(find "$dir" -newer "$mark.stamp" -print -quit)" ]; then
        echo "check-clean: '$name' wrote into $dir:" >&2
        find "$dir" -newer "$mark.stamp" | head -20 >&2
        problems=1
    fi
done
if [ "$problems" -eq 0 ]; then
    echo "check-clean: '$name' left the checkout as it was${watched[*]:+ and wrote nothing into ${watched[*]}}"
fi
exit "$problems"
