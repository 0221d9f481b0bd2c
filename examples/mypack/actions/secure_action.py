#!/usr/bin/env python3
import sys
import json
# Deviation from the guide: it imports `requests`, which is not part of Python's standard
# library and may not be installed where the action runs. `post_json()` below makes the same
# POST with urllib and returns an object with the three things main() uses from a requests
# response: status_code, ok and json().
import urllib.error
import urllib.request


def read_stdin_params():
    """Read parameters and secrets from stdin."""
    content = sys.stdin.read()
    parts = content.split('---ATTUNE_PARAMS_END---')

    params = json.loads(parts[0].strip()) if parts[0].strip() else {}
    secrets = {}
    if len(parts) > 1 and parts[1].strip():
        secrets = json.loads(parts[1].strip())

    return {**params, **secrets}


class Response:
    """The part of requests.Response that main() uses."""

    def __init__(self, status_code, body):
        self.status_code = status_code
        self.ok = status_code < 400
        self._body = body

    def json(self):
        return json.loads(self._body)


def post_json(url, data, headers):
    """requests.post(url, json=data, headers=headers), with the standard library."""
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode("utf-8"),
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return Response(response.status, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read())


def main():
    params = read_stdin_params()

    api_token = params.get('api_token')
    endpoint = params.get('endpoint')
    data = params.get('data', {})

    if not api_token or not endpoint:
        print(json.dumps({"error": "Missing required parameters"}))
        sys.exit(1)

    headers = {"Authorization": f"Bearer {api_token}"}
    # The guide: response = requests.post(endpoint, json=data, headers=headers)
    response = post_json(endpoint, data, headers)

    result = {
        "status_code": response.status_code,
        "response": response.json() if response.ok else None,
        "success": response.ok
    }

    print(json.dumps(result))
    sys.exit(0 if response.ok else 1)


if __name__ == "__main__":
    main()
