"""A py-cachify 3.x process driven by the Rust tests (support/python.rs), one command a line on
stdin, one answer a line on stdout.

    python py_cachify_peer.py REDIS_URL PREFIX

Commands (KEY is the key as given to py-cachify's lock(), without the prefix):
    hold KEY EXP            lock(KEY, nowait=True, exp=EXP) entered -> held | refused
    ahold KEY EXP           the same through the async client -> held | refused
    wait KEY TIMEOUT        lock(KEY, nowait=False, timeout=TIMEOUT) entered -> held | refused
    release KEY             the held lock's exit (py-cachify's unconditional DEL) -> released
    is_locked KEY           lock(KEY).is_locked() -> true | false
    ais_locked KEY          lock(KEY).is_alocked() -> true | false
    call_job FLAG NAME      the @lock(key='job-{flag}-{name}-{extra}') function job(FLAG == 'True',
                            NAME, None), nowait -> done | refused
    job_is_locked FLAG NAME job.is_locked(FLAG == 'True', NAME, None) -> true | false
    pickle_of KEY           whether the value under KEY (with the prefix) is byte for byte
                            pickle.dumps of what it loads as, with protocol 4 -> true | false
"""

import asyncio
import pickle
import sys

import redis
import redis.asyncio
from py_cachify import CachifyLockError, init_cachify, lock


url, prefix = sys.argv[1], sys.argv[2]
raw = redis.from_url(url)
init_cachify(
    sync_client=raw,
    async_client=redis.asyncio.from_url(url),
    prefix=prefix,
)
loop = asyncio.new_event_loop()
held = {}


@lock(key='job-{flag}-{name}-{extra}')
def job(flag, name, extra=None):
    return 'done'


def answer(text):
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


def enter(key, **options):
    lk = lock(key, **options)
    try:
        lk.__enter__()
    except CachifyLockError:
        return 'refused'
    held[key] = lk
    return 'held'


async def aenter(key, exp):
    lk = lock(key, nowait=True, exp=exp)
    try:
        await lk.__aenter__()
    except CachifyLockError:
        return 'refused'
    held[key] = lk
    return 'held'


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    command, args = words[0], words[1:]
    if command == 'hold':
        answer(enter(args[0], nowait=True, exp=int(args[1])))
    elif command == 'ahold':
        answer(loop.run_until_complete(aenter(args[0], int(args[1]))))
    elif command == 'wait':
        answer(enter(args[0], nowait=False, timeout=float(args[1])))
    elif command == 'release':
        held.pop(args[0]).__exit__(None, None, None)
        answer('released')
    elif command == 'is_locked':
        answer(str(lock(args[0]).is_locked()).lower())
    elif command == 'ais_locked':
        answer(str(loop.run_until_complete(lock(args[0]).is_alocked())).lower())
    elif command == 'call_job':
        try:
            answer(job(args[0] == 'True', args[1], None))
        except CachifyLockError:
            answer('refused')
    elif command == 'job_is_locked':
        answer(str(job.is_locked(args[0] == 'True', args[1], None)).lower())
    elif command == 'pickle_of':
        value = raw.get(prefix + args[0])
        answer(str(value is not None and pickle.dumps(pickle.loads(value), protocol=4) == value).lower())
    else:
        answer('unknown command ' + command)
