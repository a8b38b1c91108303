# Node-side wrapper for one command; placeholders @X@ are filled in by execution.py.
# POSIX sh (Linux and macOS nodes). Run as `sh FILE` by encoded_script(): "$0" is that
# temporary file, and the command's files sit beside it. Every process spawned here is
# paid once per node per command, so the script keeps them few (measured in bench/).
trap 'rm -f "$0.c" "$0.o" "$0.e"' EXIT
printf %s '@B64@' | base64 -d > "$0.c" 2>/dev/null || printf %s '@B64@' | base64 -D > "$0.c"
run=sh; command -v bash >/dev/null 2>&1 && run=bash
start=$(date +%s)
if [ @T@ -gt 0 ] && command -v timeout >/dev/null 2>&1; then
  timeout -k 5 @T@ "$run" "$0.c" >"$0.o" 2>"$0.e" </dev/null
else
  "$run" "$0.c" >"$0.o" 2>"$0.e" </dev/null
fi
rc=$?
to=0
if [ @T@ -gt 0 ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && [ $(( $(date +%s) - start )) -ge @T@ ]; then to=1; fi
no=$(($(wc -c <"$0.o"))); ne=$(($(wc -c <"$0.e")))
cap() { if [ "$2" -le @C@ ]; then cat "$1"; else head -c @H@ "$1"; printf '\n[... jexida: %s bytes omitted ...]\n' $(($2 - @C@)); tail -c @H@ "$1"; fi; }
cap "$0.o" "$no"; cap "$0.e" "$ne" >&2
printf '\n@M@ {"rc": %d, "stdout_bytes": %d, "stderr_bytes": %d, "timed_out": %d}\n' "$rc" "$no" "$ne" "$to" >&2
exit $rc
