# One JSON line per job: its state on the node, output sizes and last line (for progress).
# Filled in by scripts.py: @JOB_DIR@ @LOG_DIR@ (quoted), @IDS@ (job ids, checked by the bridge).
for id in @IDS@; do
  J=@JOB_DIR@/$id; O=@LOG_DIR@/$id.log; E=@LOG_DIR@/$id.err.log
  if [ ! -d "$J" ]; then printf '{"id":"%s","state":"missing"}\n' "$id"; continue; fi
  pid=$(cat "$J/pid" 2>/dev/null || echo 0); rc=$(cat "$J/rc" 2>/dev/null || echo null)
  state=exited
  if [ "$rc" = null ]; then
    if [ -f "$J/canceled" ]; then state=canceled
    elif [ "$pid" -gt 0 ] && kill -0 "$pid" 2>/dev/null; then state=running
    else state=vanished; fi
  fi
  to=false; [ -f "$J/timed_out" ] && to=true
  ob=$(wc -c <"$O" 2>/dev/null | tr -d ' '); eb=$(wc -c <"$E" 2>/dev/null | tr -d ' ')
  last=$(tail -c 4096 "$O" 2>/dev/null | tail -n 1 | tr -d '\000-\037"\\' | cut -c1-200)
  printf '{"id":"%s","state":"%s","rc":%s,"pid":%s,"timed_out":%s,"stdout_bytes":%s,"stderr_bytes":%s,' \
    "$id" "$state" "$rc" "$pid" "$to" "${ob:-0}" "${eb:-0}"
  printf '"started_at":"%s","ended_at":"%s","last_line":"%s"}\n' \
    "$(cat "$J/started_at" 2>/dev/null)" "$(cat "$J/ended_at" 2>/dev/null)" "$last"
done
