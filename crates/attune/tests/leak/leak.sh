#!/bin/bash
# A bash action: parses its parameters in its format (jq for JSON, PyYAML for YAML, the
# shell itself for dotenv), then hands each secret to emit.py on stdin. Secrets go only
# through pipes and builtins: sourced without `set -a` (exported, they would be in every
# child's environment) and never as a program's argument.
set -euo pipefail
here=$(dirname "$0")
if [ "$LEAK_WHERE" = file ]; then src="$ATTUNE_PARAMETER_FILE"; else src=/dev/stdin; fi
case "$LEAK_FMT" in
  json) doc=$(cat "$src") ;;
  yaml) doc=$(python3 -c 'import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin)))' < "$src") ;;
  dotenv)
    . "$src"
    doc=$(printf '%s\0' "$STORED" "$DIRECT" "$CREDS" | python3 -c '
import json, sys
s, d, c, _ = sys.stdin.read().split("\0")
print(json.dumps({"stored": s, "direct": d, "creds": json.loads(c)}))') ;;
esac
for path in .stored .direct .creds.password '.creds.keys[0]'; do
  jq -j "$path" <<<"$doc" | python3 "$here/emit.py"
done
printf 'member %s\n' "$(jq -r .creds.password <<<"$doc")"
jq -c '{stored, direct, creds}' <<<"$doc"
