"""ReLU then 2x2 max pool against pool then ReLU (what a ReLU ConvNet block computes since
stop 18, ``Block.pool_first``): the same output and gradient, forward + backward timed.

One thread; the minimum of the process CPU time over interleaved rounds, which a busy machine
disturbs far less than wall time (a descheduled process does not advance it).

    python benchmarks/bench_relu_pool.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_line
from threadpoolctl import threadpool_limits

from normlab.layers import relu_backward, relu_forward
from normlab.layers.conv import max_pool_backward, max_pool_forward

POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14), (64, 32, 32, 32)]


def relu_first(x, d):
    h, c_act = relu_forward(x)
    _, c_pool = max_pool_forward(h, POOL)
    return relu_backward(max_pool_backward(d, c_pool), c_act)


def pool_first(x, d):
    h, c_pool = max_pool_forward(x, POOL)
    _, c_act = relu_forward(h)
    return max_pool_backward(relu_backward(d, c_act), c_pool)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)
    print(machine_line(1))
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for shape in SHAPES:
            x = rng.standard_normal(shape).astype(np.float32)  # (N, C, H, W)
            d = rng.standard_normal((*shape[:2], shape[2] // 2, shape[3] // 2)).astype(np.float32)
            np.testing.assert_array_equal(relu_first(x, d), pool_first(x, d))
            times = {relu_first: [], pool_first: []}
            for r in range(args.rounds):
                order = (relu_first, pool_first) if r % 2 else (pool_first, relu_first)
                for f in order:
                    t0 = time.process_time()
                    f(x, d)
                    f(x, d)
                    times[f].append((time.process_time() - t0) / 2 * 1e3)
            a, b = min(times[relu_first]), min(times[pool_first])
            print(
                f"{shape}: relu-then-pool {a:.2f} ms, pool-then-relu {b:.2f} ms, ratio {b / a:.2f}"
            )


if __name__ == "__main__":
    main()
