"""A python action: parses its parameters in its format, from stdin or the file, then
emits every secret in every form, object members one by one; the last line is a JSON
result holding them all."""
import json, os, shlex, subprocess, sys

fmt, where = os.environ["LEAK_FMT"], os.environ["LEAK_WHERE"]
text = open(os.environ["ATTUNE_PARAMETER_FILE"]).read() if where == "file" else sys.stdin.read()
if fmt == "json":
    p = json.loads(text)
elif fmt == "yaml":
    import yaml
    p = yaml.safe_load(text)
else:
    p = {}
    for l in text.splitlines():
        k, _, v = l.partition("=")
        p[k.lower()] = shlex.split(v)[0] if v else ""
    p["creds"] = json.loads(p["creds"])
here = os.path.dirname(os.path.abspath(__file__))
values = [p["stored"], p["direct"], p["creds"]["password"], p["creds"]["keys"][0]]
for v in values:
    subprocess.run([sys.executable, os.path.join(here, "emit.py")], input=v.encode(), check=True)
print("member", p["creds"]["password"], p["creds"]["keys"][0])
print(json.dumps({"stored": p["stored"], "direct": p["direct"], "creds": p["creds"]}))
