# A page of a job's log, byte-exact (base64: Ansible strips trailing newlines), after its total size.
# Filled in by scripts.py: @LOG_DIR@ (quoted), @FILE@, @TAIL@ (lines, 0 = page), @FROM@ (1-based byte), @LIMIT@.
f=@LOG_DIR@/@FILE@
test -f "$f" || exit 3
wc -c < "$f"
if [ @TAIL@ -gt 0 ]; then tail -n @TAIL@ "$f" | tail -c @LIMIT@; else tail -c +@FROM@ "$f" | head -c @LIMIT@; fi | base64 | tr -d '\n'
