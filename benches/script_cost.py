#!/usr/bin/env python3
"""What lockwright's Lua script costs Redis, next to the raw floor: redis-server CPU per
lock+unlock pair (INFO cpu, user + sys) with the operations pipelined, so the client's speed does
not matter. Starts its own redis-server on a free loopback port and stops it.

    python3 benches/script_cost.py [pairs]

Rows: the floor (SET NX PX, then the compare-and-delete script); lockwright's batch script
(lock-core/src/redis/batch.lua) with 1, 4, 16 and 64 operations per call (group commit sends
what queued while a call was in flight as one call); the same script with every operation
answered at once without touching Redis (what the script itself costs: call overhead,
arguments, replies); and single Redis calls made from Lua. No dependencies beyond Python 3.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = open(os.path.join(ROOT, "lock-core", "src", "redis", "batch.lua")).read()
FLOOR_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
OWNER = "0123456789abcdef-task-%d"
KEYS_IN_USE = 1000


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return b"".join(out)

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(commands))
        return [self.read() for _ in commands]

    def cpu_seconds(self):
        info = self.call("INFO", "cpu").decode()
        fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
        return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def floor(redis, release_sha):
    def run(pairs):
        for start in range(0, pairs, 500):
            keys = range(start % KEYS_IN_USE, start % KEYS_IN_USE + 500)
            redis.pipeline([redis.encode("SET", "k{%d}" % i, "v%d" % i, "NX", "PX", 30000) for i in keys])
            redis.pipeline([redis.encode("EVALSHA", release_sha, 1, "k{%d}" % i, "v%d" % i) for i in keys])
    return run


def batched(redis, sha, size):
    def run(pairs):
        for start in range(0, pairs, 500):
            keys = list(range(start % KEYS_IN_USE, start % KEYS_IN_USE + 500))
            groups = [keys[j:j + size] for j in range(0, len(keys), size)]
            calls = []
            for group in groups:
                names, args = [], ["PUBLISH", 600000]
                for i in group:
                    names += ["l{%d}" % i, "l{%d}:fence" % i]
                    args += ["a", OWNER % i, 30000, 0]
                calls.append(redis.encode("EVALSHA", sha, len(names), *names, *args))
            replies = redis.pipeline(calls)
            calls = []
            for group, reply in zip(groups, replies):
                names, args = [], ["PUBLISH", 600000]
                for i, acquired in zip(group, reply):
                    assert acquired[0] == 1, acquired
                    names += ["l{%d}" % i]
                    args += ["r", OWNER % i, acquired[1], "one"]
                calls.append(redis.encode("EVALSHA", sha, len(names), *names, *args))
            for reply in redis.pipeline(calls):
                assert all(released[0] == 0 for released in reply), reply
    return run


def lua_loop(redis, body):
    sha = redis.call("SCRIPT", "LOAD", body).decode()

    def run(iterations):
        redis.call("EVALSHA", sha, 0, iterations)
    return run


def measure(redis, run, count):
    redis.call("FLUSHALL")
    run(KEYS_IN_USE)  # the fence counters exist, as for keys locked before
    before = redis.cpu_seconds()
    run(count)
    return (redis.cpu_seconds() - before) / count * 1e6


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lockwright-script-cost-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                redis = Redis(port)
                redis.call("PING")
                break
            except OSError:
                time.sleep(0.05)
        sha = redis.call("SCRIPT", "LOAD", BATCH).decode()
        answered_at_once = BATCH.replace(
            "local function acquire(lock, counter, owner, lease, ended)\n",
            "local function acquire(lock, counter, owner, lease, ended)\n  if true then return {1, 1, 1} end\n",
        ).replace(
            "local function release(lock, owner, fence, scope)\n",
            "local function release(lock, owner, fence, scope)\n  if true then return {0} end\n",
        )
        framework = redis.call("SCRIPT", "LOAD", answered_at_once).decode()
        release_sha = redis.call("SCRIPT", "LOAD", FLOOR_RELEASE).decode()
        print("| workload | redis-server CPU µs per lock+unlock pair |")
        print("|---|---:|")
        print("| floor: SET NX PX + compare-and-delete script | %.2f |" % measure(redis, floor(redis, release_sha), pairs))
        for size in (1, 4, 16, 64):
            print("| lockwright batch.lua, %d operations per call | %.2f |" % (size, measure(redis, batched(redis, sha, size), pairs)))
        for size in (1, 4, 16, 64):
            print("| batch.lua answering at once (the script's own cost), %d per call | %.2f |" % (size, measure(redis, batched(redis, framework, size), pairs)))
        print()
        print("| one Redis call made from Lua | µs of CPU per call |")
        print("|---|---:|")
        loop = "for i = 1, tonumber(ARGV[1]) do local lock = 'b{' .. i .. '}' %s end"
        empty = measure(redis, lua_loop(redis, loop % ""), pairs)
        for name, body in [
            ("GET (missing key)", "redis.call('GET', lock)"),
            ("SET PX + DEL", "redis.call('SET', lock, 'x', 'PX', 30000) redis.call('DEL', lock)"),
            ("SET + DEL", "redis.call('SET', lock, 'x') redis.call('DEL', lock)"),
            ("SET PX GET (existing counter)", "redis.call('SET', 'f{' .. (i % 500) .. '}', '1234567890123456', 'PX', 600000, 'GET')"),
            ("SET KEEPTTL GET (existing counter)", "redis.call('SET', 'f{' .. (i % 500) .. '}', '1234567890123456', 'KEEPTTL', 'GET')"),
            ("TIME", "redis.call('TIME')"),
            ("string.match of a lock value", "string.match('owner-abc-task-12:1234567890123456:1', '^(.-):(%d+):(%d+)(.*)$')"),
            ("string.format('%.0f') of a fence", "string.format('%.0f', 1234567890123456 + i)"),
        ]:
            print("| %s | %.2f |" % (name, measure(redis, lua_loop(redis, loop % body), pairs) - empty))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
