# A finished job's output, capped (head + tail of each stream), each stream ended by a marker line.
# Filled in by scripts.py: @LOG_DIR@ (quoted), @ID@, @CAP@, @HALF@.
for f in @LOG_DIR@/@ID@.log @LOG_DIR@/@ID@.err.log; do
  n=$(wc -c <"$f")
  if [ "$n" -le @CAP@ ]; then cat "$f"
  else head -c @HALF@ "$f"; printf '\n[... jexida: %s bytes omitted ...]\n' $((n - @CAP@)); tail -c @HALF@ "$f"; fi
  printf '\n@@JEXIDA-STREAM-END@@\n'
done
