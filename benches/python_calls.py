"""Sequential plain calls of a trivial Python function through oxiida.run,
against a ThreadPoolExecutor submit/result round trip, measured in one run.
Prints the figures and the ratio (target: <= 0.25x); asserts nothing.

usage: python benches/python_calls.py [N]     (with the oxiida package installed)
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import oxiida

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


def trivial(x):
    return x


def per_call(seconds):
    return seconds * 1e6 / N


def oxiida_calls():
    loop = f"i = 0;\nwhile (i < {N}) {{ x = trivial(i); i = i + 1; }}\n"
    bare = f"i = 0;\nwhile (i < {N}) {{ x = i; i = i + 1; }}\n"
    start = time.perf_counter()
    oxiida.run("require trivial;\n" + loop)
    with_calls = time.perf_counter() - start
    start = time.perf_counter()
    oxiida.run(bare)
    return with_calls - (time.perf_counter() - start)


def executor_calls():
    with ThreadPoolExecutor(max_workers=1) as pool:
        start = time.perf_counter()
        for i in range(N):
            pool.submit(trivial, i).result()
        return time.perf_counter() - start


ox = min(oxiida_calls() for _ in range(3))
tp = min(executor_calls() for _ in range(3))
print(f"{N} sequential calls of a trivial function (best of 3):")
print(f"  oxiida plain call        {per_call(ox):7.2f} us per call")
print(f"  ThreadPoolExecutor trip  {per_call(tp):7.2f} us per call")
print(f"  ratio oxiida/executor: {ox / tp:.2f}x (target <= 0.25x)")
