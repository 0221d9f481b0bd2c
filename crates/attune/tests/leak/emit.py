"""Prints a secret (read from stdin, never argv) in every form the masker must catch:
raw, split over writes and across a 4096-byte boundary, base64/base64url at every offset
(HTTP Basic included), percent-encoded as Python and JavaScript and jq write it, JSON as
Python, serde and jq write it. The real encoders run: Python here, node and jq as
subprocesses fed on stdin."""
import base64, json, os, subprocess, sys, urllib.parse

s = sys.stdin.read()
out = sys.stdout


def line(text):
    out.write(text + "\n")
    out.flush()


line("raw " + s)
# Split over writes, each flushed: the masker sees the pieces in separate reads.
for cut in (1, len(s) // 2, len(s) - 1):
    out.write("split " + s[:cut])
    out.flush()
    out.write(s[cut:] + "\n")
    out.flush()
# Straddling a 4096-byte boundary of the pipe.
out.write("x" * (4096 - 3) + s + "\n")
out.flush()
b = s.encode()
for prefix in (b"", b"user:", b"u:", b"ab:"):
    for suffix in (b"", b":tail", b"?"):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            line("b64 " + enc(prefix + b + suffix).decode())
line("Authorization: Basic " + base64.b64encode(b"admin:" + b).decode())
line("quote " + urllib.parse.quote(s))
line("quote_plus " + urllib.parse.quote_plus(s))
line("quote_safe " + urllib.parse.quote(s, safe=""))
line("dumps " + json.dumps({"token": s}))
line("dumps_utf8 " + json.dumps({"token": s}, ensure_ascii=False))
node = subprocess.run(
    ["node", "-e", "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{"
     "console.log('uri ' + encodeURIComponent(d));"
     "console.log('stringify ' + JSON.stringify({t: d}));"
     "console.log('nodeb64 ' + Buffer.from('user:' + d).toString('base64'));})"],
    input=b, stdout=subprocess.PIPE, check=True)
out.write(node.stdout.decode())
jq = subprocess.run(["jq", "-Rrs", '"jquri " + @uri, "jqjson " + ({t: .} | tojson), "jqb64 " + ("user:" + . | @base64)'],
                    input=b, stdout=subprocess.PIPE, check=True)
out.write(jq.stdout.decode())
out.flush()
sys.stderr.write("err " + s + "\n")
