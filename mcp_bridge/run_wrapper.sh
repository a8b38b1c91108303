# Node-side wrapper for one command; placeholders @X@ are filled in by execution_scripts.py
# (@DECODE@: the command, base64 in a variable, written to $D/c).
# POSIX sh (Linux and macOS nodes). Run as `sh DIR/run.sh` by the launcher (execution_scripts.py):
# DIR is a private folder of this run (mode 0700, umask 077), so the command and its output
# are never readable by other users while it runs; the launcher removes it afterwards.
# Every process spawned here is paid once per node per command, so the script keeps them few.
D=${0%/*}
@DECODE@
run=sh; command -v bash >/dev/null 2>&1 && run=bash
start=$(date +%s)
[ -f "$D/canceled" ] && : > "$D/o" && : > "$D/e" && set -- skip
# The pid file names the process a cancel signals: `timeout`, which passes the signal on to the
# command's whole process group (as when the time is up).
if [ "$1" = skip ]; then
  false
elif [ @T@ -gt 0 ] && command -v timeout >/dev/null 2>&1; then
  sh -c 'echo $$ > "$1/pid"; shift; exec "$@"' - "$D" timeout -k 5 @T@ "$run" "$D/c" >"$D/o" 2>"$D/e" </dev/null
else
  sh -c 'echo $$ > "$1/pid"; shift; exec "$@"' - "$D" "$run" "$D/c" >"$D/o" 2>"$D/e" </dev/null
fi
rc=$?
to=0
if [ @T@ -gt 0 ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && [ $(( $(date +%s) - start )) -ge @T@ ]; then to=1; fi
cx=0; [ -f "$D/canceled" ] && cx=1
no=$(($(wc -c <"$D/o"))); ne=$(($(wc -c <"$D/e")))
cap() { if [ "$2" -le @C@ ]; then cat "$1"; else head -c @H@ "$1"; printf '\n[... jexida: %s bytes omitted ...]\n' $(($2 - @C@)); tail -c @H@ "$1"; fi; }
cap "$D/o" "$no"; cap "$D/e" "$ne" >&2
printf '\n@M@ {"rc": %d, "stdout_bytes": %d, "stderr_bytes": %d, "timed_out": %d, "canceled": %d}\n' "$rc" "$no" "$ne" "$to" "$cx" >&2
exit $rc
