#!/usr/bin/env bash
# formats.dotenv_file: the file named by $ATTUNE_PARAMETER_FILE (mode 0400, removed when the
# action ends) holds one KEY='VALUE' line per parameter: strings as they are, numbers and
# booleans as JSON text (3, true), lists and objects as compact JSON.
#
# Sourcing it only assigns variables; leave out `set -a` so that the secret is not exported
# to the programs this script starts, and never echo it.
set -eu
. "$ATTUNE_PARAMETER_FILE"

if [ "$DRY_RUN" = true ]; then
    mode="dry run"
else
    mode="live"
fi
printf 'Syncing %s (%s, up to %d retries)\n' "$TARGET" "$mode" "$RETRIES"
printf 'key fingerprint: %s\n' "$(printf '%s' "$API_TOKEN" | sha256sum | cut -c1-12)"
