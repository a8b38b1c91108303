# Stops a job's whole session (TERM, then KILL), marks it canceled, says what it stopped.
# Filled in by scripts.py: @JOB_DIR@ (quoted), @ID@.
J=@JOB_DIR@/@ID@
[ -d "$J" ] || { echo missing; exit 0; }
[ -f "$J/rc" ] && { echo finished; exit 0; }
pid=$(cat "$J/pid" 2>/dev/null || echo 0)
: > "$J/canceled"
n=$(pgrep -s "$pid" 2>/dev/null | wc -l | tr -d ' ')
pkill -TERM -s "$pid" 2>/dev/null || kill -TERM -- "-$pid" 2>/dev/null || true
i=0; while pgrep -s "$pid" >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
pkill -KILL -s "$pid" 2>/dev/null || true
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/ended_at"
left=$(pgrep -s "$pid" 2>/dev/null | wc -l | tr -d ' ')
echo "canceled $n $left"
