#!/usr/bin/env bash
# Reads MESSAGE='…' from stdin: every value is single-quoted, so sourcing it runs nothing.
set -eu
. /dev/stdin
printf '%s\n' "$MESSAGE"
