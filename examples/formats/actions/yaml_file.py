#!/usr/bin/env python3
"""formats.yaml_file: the parameters, secrets included, are one YAML document in the file
named by $ATTUNE_PARAMETER_FILE (mode 0400, removed when the action ends).

Load it with yaml.safe_load: it gives the same values, with the same types, as JSON would.
Never print the secret or the whole document; print a short hash to tell keys apart.
"""
import hashlib
import json
import os

import yaml

with open(os.environ["ATTUNE_PARAMETER_FILE"], encoding="utf-8") as f:
    params = yaml.safe_load(f)

api_key = params.pop("api_key")
hosts = params["hosts"]
print(f"Deploying version {params['version']} to {len(hosts)} host(s): {', '.join(hosts)}")
for key, value in sorted(params.get("settings", {}).items()):
    print(f"  {key} = {value!r}")

fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:12]
print(json.dumps({"version": params["version"], "hosts": len(hosts), "key_fingerprint": fingerprint}))
