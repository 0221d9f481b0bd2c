#!/usr/bin/env bash
# formats.dotenv_stdin: one KEY='VALUE' line per parameter on stdin, KEY being the name in
# upper case (api_token -> API_TOKEN). Every value is single-quoted, so sourcing the lines only
# assigns variables: a value such as $(rm -rf ~) stays text and is never run.
#
# Source without `set -a`: exported, the secret would sit in the environment of every
# program this script starts. Pass it to programs on stdin (printf is a shell builtin, so
# the secret is on no command line), and never echo it.
set -eu
. /dev/stdin

printf '%s, %s!\n' "$GREETING" "$NAME"
printf 'key fingerprint: %s\n' "$(printf '%s' "$API_TOKEN" | sha256sum | cut -c1-12)"
