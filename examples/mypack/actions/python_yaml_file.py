#!/usr/bin/env python3
import os
import yaml


def read_file_params():
    """Read parameters from temporary file."""
    param_file = os.environ.get('ATTUNE_PARAMETER_FILE')
    if not param_file:
        return {}

    with open(param_file, 'r') as f:
        return yaml.safe_load(f)


params = read_file_params()
message = params.get('message', 'default')
count = params.get('count', 0)
print(f"Message: {message}, Count: {count}")
