#!/usr/bin/env python3
"""Compares the wall time of commands, interleaved: every round runs each command once, in
a random order, so that a noisy machine slows all of them alike. Prints each median and its
ratio to the first command (the baseline, e.g. the action's script run by bash directly).

    scripts/bench_overhead.py ROUNDS 'NAME=|COMMAND ARGS…' …

Until `attune bench` exists (issue 16), this is how the `run --local` overhead is measured:

    scripts/bench_overhead.py 1000 \
      'bash=|/usr/bin/bash /opt/bench/p/actions/noop.sh' \
      'attune=|target/release/attune run --local --pack-dir /opt/bench/p bench.noop'

An environment variable for one command: 'NAME=VAR:value,VAR2:value|COMMAND …'.
"""
import os
import random
import statistics
import sys
import time

WARMUP = 20


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    cmds = []
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        envs, cmd = rest.split("|", 1)
        env = dict(os.environ)
        for kv in filter(None, envs.split(",")):
            k, v = kv.split(":", 1)
            env[k] = v
        cmds.append((name, cmd.split(), env))
    times = {name: [] for name, _, _ in cmds}
    devnull = os.open(os.devnull, os.O_WRONLY)
    redirect = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    for r in range(rounds + WARMUP):
        order = list(cmds)
        random.shuffle(order)
        for name, argv, env in order:
            t = time.perf_counter_ns()
            pid = os.posix_spawn(argv[0], argv, env, file_actions=redirect)
            _, status = os.waitpid(pid, 0)
            elapsed = time.perf_counter_ns() - t
            if status != 0:
                sys.exit(f"{name} failed (wait status {status})")
            if r >= WARMUP:
                times[name].append(elapsed / 1e6)
    base = statistics.median(times[cmds[0][0]])
    for name, _, _ in cmds:
        m = statistics.median(times[name])
        print(f"{name:12s} median {m:.3f} ms  ratio {m / base:.2f}")


if __name__ == "__main__":
    main()
