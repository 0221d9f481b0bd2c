#!/usr/bin/env bash
# stdin is one line of compact JSON such as {"seconds":2.5}; the schema guarantees a number.
set -eu
IFS= read -r params
if [[ $params =~ \"seconds\":([-0-9.eE+]+) ]]; then
  exec sleep "${BASH_REMATCH[1]}"
fi
echo "no seconds parameter in: $params" >&2
exit 2
