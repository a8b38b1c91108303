# The job itself, detached on the node by start.sh: sh run.sh JOB_DIR OUT ERR TIMEOUT.
# Writes pid first and rc last (each with an atomic rename), so a poll never reads half.
J=$1; O=$2; E=$3; T=$4
echo $$ > "$J/pid.tmp" && mv "$J/pid.tmp" "$J/pid"
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/started_at"
run=sh; command -v bash >/dev/null 2>&1 && run=bash
start=$(date +%s)
if [ "$T" -gt 0 ] && command -v timeout >/dev/null 2>&1; then
  timeout -k 10 "$T" "$run" "$J/command" >"$O" 2>"$E" </dev/null
else
  "$run" "$J/command" >"$O" 2>"$E" </dev/null
fi
rc=$?
if [ "$T" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$T" ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then
  : > "$J/timed_out"
fi
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/ended_at"
echo $rc > "$J/rc.tmp" && mv "$J/rc.tmp" "$J/rc"
