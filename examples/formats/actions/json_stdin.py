#!/usr/bin/env python3
"""formats.json_stdin: the parameters, secrets included, are one JSON object on stdin.

A secret is an ordinary key of that object. Use it, but never print or log it, nor the whole
parameter object: Attune masks the secret values it knows in the output it keeps, but cannot
recognise a secret you have altered (sliced, re-encoded). To show which key was used, print
a short hash of it, as here.
"""
import hashlib
import json
import sys

params = json.load(sys.stdin)
api_key = params["api_key"]

for _ in range(params["count"]):
    print(f"Hello, {params['name']}!")

# The last line of stdout, if it is a JSON object, becomes the execution's result.
fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:12]
print(json.dumps({"greeted": params["name"], "key_fingerprint": fingerprint}))
