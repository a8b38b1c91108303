# Starts one job detached (setsid: its own session, so cancel reaches the whole tree) and
# prints its pid. `mkdir` without -p refuses a second start of the same id.
# Filled in by scripts.py: @JOB_DIR@ @LOG_DIR@ (quoted), @ID@, @B64@ (the command), @RUN_B64@ (run.sh), @T@.
set -e
umask 077
J=@JOB_DIR@/@ID@; O=@LOG_DIR@/@ID@.log; E=@LOG_DIR@/@ID@.err.log
mkdir "$J"
# Each base64 text once, in a variable (printf is a builtin: no argument-size limit).
c='@B64@'; r='@RUN_B64@'
{ printf %s "$c" | base64 -d 2>/dev/null || printf %s "$c" | base64 -D; } > "$J/command"
{ printf %s "$r" | base64 -d 2>/dev/null || printf %s "$r" | base64 -D; } > "$J/run.sh"
: > "$O"; : > "$E"
if command -v setsid >/dev/null 2>&1; then
  setsid sh "$J/run.sh" "$J" "$O" "$E" @T@ >/dev/null 2>&1 </dev/null &
else
  nohup sh "$J/run.sh" "$J" "$O" "$E" @T@ >/dev/null 2>&1 </dev/null &
fi
i=0; while [ ! -s "$J/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
cat "$J/pid"
