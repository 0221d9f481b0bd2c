#!/usr/bin/env python3
"""core.http_request: parameters (including the secret auth_token) arrive as one line of JSON
on stdin; the token goes only into the request's Authorization header, and only to the
origin it was meant for: a redirect to another scheme, host or port drops it (and any
cookie), as curl and requests do."""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

# Headers that carry credentials: never forwarded to another origin.
CREDENTIAL_HEADERS = ("Authorization", "Proxy-authorization", "Cookie")
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url):
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    return scheme, (u.hostname or "").lower(), u.port or DEFAULT_PORTS.get(scheme)


class SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follows redirects like the default handler, without credentials across origins."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(new.full_url) != origin(req.full_url):
            for name in CREDENTIAL_HEADERS:
                # Request stores header names capitalized ("Authorization").
                new.remove_header(name)
        return new


def main():
    params = json.loads(sys.stdin.readline())
    headers = dict(params.get("headers") or {})
    token = params.get("auth_token")
    if token:
        headers["Authorization"] = f"{params.get('auth_scheme', 'Bearer')} {token}"
    body = params.get("body")
    data = body.encode("utf-8") if body is not None else None
    req = urllib.request.Request(params["url"], data=data, headers=headers, method=params.get("method", "GET"))
    try:
        opener = urllib.request.build_opener(SameOriginCredentials)
        with opener.open(req, timeout=params.get("timeout", 30)) as resp:
            status, resp_headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, resp_headers, raw = e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"request failed: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    ok = status < 400
    result = {
        "status_code": status,
        "headers": resp_headers,
        "body": raw.decode("utf-8", errors="replace"),
        "ok": ok,
    }
    print(json.dumps(result))
    return 0 if ok or not params.get("fail_on_status", True) else 1


if __name__ == "__main__":
    sys.exit(main())
