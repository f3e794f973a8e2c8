"""py-cachify 3.1 on the workloads of benches/peers.rs, against the same redis-server.

Run by benches/pycachify_bench.sh (which makes a throwaway venv with py-cachify and redis-py), or
directly in an environment that has both:

    python3 benches/pycachify_bench.py redis://127.0.0.1:6379 [--seconds 1] [--rounds 3] [--handoffs 40]

Prints one JSON object on stdout (progress goes to stderr). Throughputs are lock+unlock pairs per
second, the median over the rounds, each round running for --seconds on distinct keys:

- async_c1, async_c50: `async with lock(key)` in 1 / 50 asyncio tasks, each on its own key;
- decorator_c1, decorator_c50: the same through an `@lock(key='...-{i}')` async function;
- sync_c1, sync_c50: `with lock(key)` in 1 / 50 threads (the GIL is py-cachify's, not ours);
- memory_sync, memory_async: the in-memory lock (`init_cachify()` with no client), one key,
  one thread / one task;
- handoff_1, handoff_10: one holder and 1 / 10 waiters on one key (`nowait=False`), the time from
  just before the holder's release to the next holder's acquire returning, in ms (p50, p99). The
  waiters poll every `lock_poll_interval` (py-cachify's default, 0.1 s, is what is measured).

Locks use py-cachify's defaults (exp = 30 s, prefix `PYC-`); keys are prefixed `peers-pyc-`.
"""

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values) if values else None


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil
    return sorted_values[int(rank) - 1]


# ---------- throughput ----------


async def async_pairs(lock, concurrency, seconds, prefix):
    """Pairs/s of `async with lock(key)` in `concurrency` tasks on distinct keys."""
    deadline = time.perf_counter() + seconds

    async def worker(i):
        key = f'{prefix}-{i}'
        n = 0
        while True:
            async with lock(key):
                pass
            if time.perf_counter() >= deadline:
                return n
            n += 1

    counts = await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / seconds


async def decorator_pairs(decorated, concurrency, seconds):
    deadline = time.perf_counter() + seconds

    async def worker(i):
        n = 0
        while True:
            await decorated(i)
            if time.perf_counter() >= deadline:
                return n
            n += 1

    counts = await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / seconds


def sync_pairs(lock, concurrency, seconds, prefix):
    """Pairs/s of `with lock(key)` in `concurrency` threads on distinct keys."""
    counts = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(i):
        key = f'{prefix}-{i}'
        start.wait()
        n = 0
        while True:
            with lock(key):
                pass
            if time.perf_counter() >= deadline[0]:
                counts[i] = n
                return
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / seconds


# ---------- hand-off latency ----------


async def handoff(lock, waiters, handoffs, key, hold=0.005):
    """One holder and `waiters` waiters cycling on `key`; returns the hand-off latencies (s).

    The holder keeps the lock until every other participant is waiting (plus `hold`), stores the
    time just before its release, and releases. Whoever acquires next records the time since
    then, and becomes the holder. The previous holder waits for that record before it queues
    again, so each hand-off goes to a participant that was already waiting.
    """
    participants = waiters + 1
    state = {'released_at': None, 'waiting': 0, 'done': False}
    samples = []
    recorded = asyncio.Event()

    async def participant():
        while not state['done']:
            state['waiting'] += 1
            async with lock(key, nowait=False, timeout=60):
                now = time.perf_counter()
                state['waiting'] -= 1
                released_at, state['released_at'] = state['released_at'], None
                if released_at is not None:
                    samples.append(now - released_at)
                    recorded.set()
                if len(samples) >= handoffs:
                    state['done'] = True
                if state['done']:
                    break
                while state['waiting'] < participants - 1:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(hold)
                recorded.clear()
                state['released_at'] = time.perf_counter()
            # Released (the context manager's exit). Queue again only after the hand-off.
            await recorded.wait()

    tasks = [asyncio.create_task(participant()) for _ in range(participants)]
    # Everyone left blocked when the last sample arrived gets the lock in turn and stops.
    while not state['done']:
        await asyncio.sleep(0.01)
    recorded.set()
    await asyncio.gather(*tasks)
    return samples


def handoff_summary(samples):
    ms = sorted(s * 1000.0 for s in samples)
    return {'p50_ms': percentile(ms, 50), 'p99_ms': percentile(ms, 99), 'n': len(ms)}


# ---------- main ----------


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('url')
    parser.add_argument('--seconds', type=float, default=1.0)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--handoffs', type=int, default=40)
    args = parser.parse_args()

    from importlib.metadata import version

    import redis
    import redis.asyncio
    from py_cachify import init_cachify, lock

    out = {
        'py_cachify': version('py-cachify'),
        'redis_py': version('redis'),
        'python': sys.version.split()[0],
        'seconds': args.seconds,
        'rounds': args.rounds,
    }

    sync_client = redis.Redis.from_url(args.url)
    async_client = redis.asyncio.Redis.from_url(args.url)
    init_cachify(sync_client=sync_client, async_client=async_client)

    @lock(key='peers-pyc-dec-{i}')
    async def decorated(i):
        return None

    async def redis_async_part():
        # Warm-up: open the pool's connections.
        await async_pairs(lock, 50, 0.3, 'peers-pyc-async')
        await decorator_pairs(decorated, 50, 0.3)
        runs = {'async_c1': [], 'async_c50': [], 'decorator_c1': [], 'decorator_c50': []}
        for r in range(args.rounds):
            for c in (1, 50):
                runs[f'async_c{c}'].append(await async_pairs(lock, c, args.seconds, 'peers-pyc-async'))
                runs[f'decorator_c{c}'].append(await decorator_pairs(decorated, c, args.seconds))
            log(f'py-cachify round {r + 1}/{args.rounds}: ' + ', '.join(f'{k} {v[-1]:.0f}' for k, v in runs.items()))
        return runs

    runs = asyncio.run(redis_async_part())
    # asyncio.run closed its loop: the async client needs a fresh one for the hand-off part.
    sync_pairs(lock, 50, 0.3, 'peers-pyc-sync')
    runs.update({'sync_c1': [], 'sync_c50': []})
    for r in range(args.rounds):
        for c in (1, 50):
            runs[f'sync_c{c}'].append(sync_pairs(lock, c, args.seconds, 'peers-pyc-sync'))
    for name, values in runs.items():
        out[name] = median(values)
        out[name + '_rounds'] = values

    async def handoff_part():
        client = redis.asyncio.Redis.from_url(args.url)
        init_cachify(sync_client=sync_client, async_client=client)
        result = {}
        for waiters in (1, 10):
            log(f'py-cachify hand-off, {waiters} waiter(s), {args.handoffs} hand-offs...')
            samples = await handoff(lock, waiters, args.handoffs, f'peers-pyc-handoff-{waiters}')
            result[f'handoff_{waiters}'] = handoff_summary(samples)
        await client.aclose()
        return result

    out.update(asyncio.run(handoff_part()))

    # The in-memory lock: init_cachify() with no client.
    init_cachify()
    sync_pairs(lock, 1, 0.3, 'peers-pyc-mem')
    out['memory_sync_rounds'] = [sync_pairs(lock, 1, args.seconds, 'peers-pyc-mem') for _ in range(args.rounds)]
    out['memory_sync'] = median(out['memory_sync_rounds'])

    async def memory_async():
        await async_pairs(lock, 1, 0.3, 'peers-pyc-mem-async')
        return [await async_pairs(lock, 1, args.seconds, 'peers-pyc-mem-async') for _ in range(args.rounds)]

    out['memory_async_rounds'] = asyncio.run(memory_async())
    out['memory_async'] = median(out['memory_async_rounds'])

    print(json.dumps(out))


if __name__ == '__main__':
    main()
