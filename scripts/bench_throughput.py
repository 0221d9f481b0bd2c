#!/usr/bin/env python3
"""End-to-end throughput of trivial executions (core.noop) through the REST API, SQLite
against PostgreSQL with remote workers, measured in one run (machines here are noisy: the
figure that matters is the ratio).

    scripts/bench_throughput.py [--attune target/release/attune] [--n 1000] [--clients 16]
        [--database-url postgres://postgres@127.0.0.1:5432/test] [--rounds 2]

Each round, for each setup, in alternating order:
  sqlite:   attune server --workers 4 (embedded workers, SQLite in a temp data dir)
  postgres: attune server --workers 0 on a fresh database + 3 `attune worker --concurrency 4`
Then N executions are submitted by CLIENTS threads and the clock stops when the last one is
final. Prints executions/s per setup and round, and the median ratio postgres/sqlite.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request


def http(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def wait_file(path, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"{path} did not appear")


def psql(url, sql):
    subprocess.run(["psql", url, "-qAtc", sql], check=True,
                   env=dict(os.environ, PGOPTIONS="--client-min-messages=warning"))


def start(attune, data, args, env=None):
    os.makedirs(data, exist_ok=True)
    return subprocess.Popen(
        [attune, "--data-dir", data] + args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, ATTUNE_LOG="warn", **(env or {})),
    )


def run_load(url, token, n, clients):
    ids = []
    lock = threading.Lock()
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]

    def client(k):
        for _ in range(k):
            e = http("POST", f"{url}/api/v1/executions", token, {"action_ref": "core.noop"})
            with lock:
                ids.append(e["id"])

    start_t = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = {"succeeded", "failed", "timeout", "canceled", "abandoned"}
    low = min(ids)
    while True:
        page = http("GET", f"{url}/api/v1/executions?limit=200", token)
        # Done when nothing at or above our first id is still in flight.
        busy = http("GET", f"{url}/api/v1/executions?status=requested&limit=1", token) + \
            http("GET", f"{url}/api/v1/executions?status=scheduled&limit=1", token) + \
            http("GET", f"{url}/api/v1/executions?status=running&limit=1", token)
        if not [e for e in busy if e["id"] >= low] and all(e["status"] in final for e in page):
            break
        time.sleep(0.01)
    return n / (time.monotonic() - start_t)


def setup_sqlite(attune, root):
    data = os.path.join(root, "sqlite")
    server = start(attune, data, ["server", "--listen", "127.0.0.1:0", "--workers", "4"])
    wait_file(os.path.join(data, "server.json"))
    url = json.load(open(os.path.join(data, "server.json")))["url"]
    token = open(os.path.join(data, "admin.token")).read().strip()
    return url, token, [server]


def setup_postgres(attune, root, admin_url, k):
    name = f"attune_bench_{os.getpid()}_{k}"
    psql(admin_url, f"DROP DATABASE IF EXISTS {name}")
    psql(admin_url, f"CREATE DATABASE {name}")
    db = admin_url.rsplit("/", 1)[0] + "/" + name
    data = os.path.join(root, f"pg{k}")
    server = start(attune, data, ["server", "--listen", "127.0.0.1:0", "--workers", "0", "--database-url", db])
    wait_file(os.path.join(data, "server.json"))
    url = json.load(open(os.path.join(data, "server.json")))["url"]
    token = open(os.path.join(data, "admin.token")).read().strip()
    procs = [server]
    for w in range(3):
        procs.append(start(attune, os.path.join(root, f"w{k}-{w}"),
                           ["worker", "--database-url", db, "--name", f"w{w}", "--concurrency", "4"]))
    deadline = time.time() + 30
    while len([x for x in http("GET", f"{url}/api/v1/workers", token) if x["state"] == "live"]) < 3:
        if time.time() > deadline:
            raise SystemExit("the workers did not start")
        time.sleep(0.1)
    return url, token, procs, (admin_url, name)


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attune", default="target/release/attune")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--database-url", default=os.environ.get(
        "ATTUNE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    a = ap.parse_args()
    attune = os.path.abspath(a.attune)
    results = {"sqlite": [], "postgres": []}
    root = tempfile.mkdtemp(prefix="attune-bench-", dir="/var/tmp")
    try:
        for r in range(a.rounds):
            order = ["sqlite", "postgres"] if r % 2 == 0 else ["postgres", "sqlite"]
            for which in order:
                if which == "sqlite":
                    url, token, procs = setup_sqlite(attune, os.path.join(root, f"r{r}"))
                    drop = None
                else:
                    url, token, procs, drop = setup_postgres(attune, root, a.database_url, r)
                try:
                    http("POST", f"{url}/api/v1/executions", token, {"action_ref": "core.noop"})
                    time.sleep(0.5)
                    rate = run_load(url, token, a.n, a.clients)
                finally:
                    stop(procs)
                    if drop:
                        psql(drop[0], f"DROP DATABASE IF EXISTS {drop[1]} WITH (FORCE)")
                results[which].append(rate)
                print(f"round {r + 1} {which:8} {rate:8.1f} executions/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    s, p = statistics.median(results["sqlite"]), statistics.median(results["postgres"])
    print(f"median: sqlite {s:.1f}/s, postgres+3 workers {p:.1f}/s, ratio {p / s:.2f}")


if __name__ == "__main__":
    main()
