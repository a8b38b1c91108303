# Node-side wrapper for one command; placeholders @X@ are filled in by execution.py.
# Written for POSIX sh (Linux and macOS nodes).
d=$(mktemp -d "${TMPDIR:-/tmp}/jexida.XXXXXX") || exit 97
trap 'rm -rf "$d"' EXIT
printf %s '@B64@' | base64 -d > "$d/cmd" 2>/dev/null || printf %s '@B64@' | base64 -D > "$d/cmd"
run=sh; command -v bash >/dev/null 2>&1 && run=bash
start=$(date +%s)
if [ @T@ -gt 0 ] && command -v timeout >/dev/null 2>&1; then
  timeout -k 5 @T@ "$run" "$d/cmd" >"$d/o" 2>"$d/e" </dev/null
else
  "$run" "$d/cmd" >"$d/o" 2>"$d/e" </dev/null
fi
rc=$?
end=$(date +%s)
cap() { n=$(wc -c <"$1" | tr -d ' '); if [ "$n" -le @C@ ]; then cat "$1"; else head -c @H@ "$1"; printf '\n[... jexida: %s bytes omitted ...]\n' $((n - @C@)); tail -c @H@ "$1"; fi; }
cap "$d/o"; cap "$d/e" >&2
to=0; if [ @T@ -gt 0 ] && [ $((end - start)) -ge @T@ ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then to=1; fi
printf '\n@M@ {"rc": %d, "stdout_bytes": %s, "stderr_bytes": %s, "timed_out": %d}\n' "$rc" "$(wc -c <"$d/o" | tr -d ' ')" "$(wc -c <"$d/e" | tr -d ' ')" "$to" >&2
exit $rc
