#!/bin/bash
set -e

# Check if parameter file exists
if [ -z "$ATTUNE_PARAMETER_FILE" ]; then
    echo "ERROR: No parameter file provided" >&2
    exit 1
fi

# Read configuration from YAML file (requires yq)
# Deviation from the guide: it uses mikefarah's yq (`yq eval '.environment // "dev"'` and
# `yq eval '.config'`). The yq that Debian and PyPI install is kislyuk's, a jq wrapper that
# takes jq syntax: -r prints a string raw, -y prints the result as YAML (as `yq eval` does).
ENVIRONMENT=$(yq -r '.environment // "dev"' "$ATTUNE_PARAMETER_FILE")
CONFIG=$(yq -y '.config' "$ATTUNE_PARAMETER_FILE")

echo "Processing configuration for environment: $ENVIRONMENT"
echo "Config: $CONFIG"

# Process configuration...
# Your logic here

echo "Configuration processed successfully"
exit 0
