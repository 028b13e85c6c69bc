"""Non-temporal against ordinary stores on this machine: would streaming stores lower the floor?

Run:  python benchmarks/bench_stores.py [--threads 2] [--repeat 40]

A normalization pass writes its output once. An ordinary store first reads the output's cache
line (read-for-ownership); a non-temporal store (``vmovntps``) writes around the caches, saving
that read but sending the line to memory rather than to the shared L3. This times the pass
``y = 1.5 * x + 0.5`` both ways with numba on float32 arrays of 4-64 MiB: the ordinary loop as
LLVM vectorises it, and a loop whose body is an explicit 16-wide vector store carrying LLVM's
``!nontemporal`` metadata (peeled to a 64-byte-aligned start, ``sfence`` after), checked to give
identical output. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse

import numba as nb
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

_W = 16  # floats per vector store: 64 bytes, one cache line


@intrinsic
def _stream_axb(typingctx, out, x, i, a, b):
    """``out[i:i+16] = x[i:i+16] * a + b`` as one non-temporal 64-byte store."""
    sig = types.void(out, x, i, a, b)

    def codegen(context, builder, sig, args):
        out_v, x_v, i_v, a_v, b_v = args
        oary = context.make_array(sig.args[0])(context, builder, out_v)
        xary = context.make_array(sig.args[1])(context, builder, x_v)
        vec = ir.VectorType(ir.FloatType(), _W)
        i32 = ir.IntType(32)

        def splat(s):
            v = builder.insert_element(ir.Constant(vec, ir.Undefined), s, ir.Constant(i32, 0))
            mask = ir.Constant(ir.VectorType(i32, _W), [0] * _W)
            return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), mask)

        src = builder.bitcast(builder.gep(xary.data, [i_v]), vec.as_pointer())
        r = builder.fadd(builder.fmul(builder.load(src, align=4), splat(a_v)), splat(b_v))
        dst = builder.bitcast(builder.gep(oary.data, [i_v]), vec.as_pointer())
        store = builder.store(r, dst, align=4 * _W)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(i32, 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _sfence(typingctx):
    """Order the non-temporal stores before whatever follows."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=fnty), [])
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(parallel=True, fastmath={"reassoc", "contract"})
def _ordinary(x, y):
    for r in prange(x.shape[0]):
        a = x[r]
        o = y[r]
        for i in range(a.shape[0]):
            o[i] = a[i] * np.float32(1.5) + np.float32(0.5)


@nb.njit(parallel=True, fastmath={"reassoc", "contract"})
def _streaming(x, y):
    for r in prange(x.shape[0]):
        a = x[r]
        o = y[r]
        n = a.shape[0]
        i = 0
        while i < n and (o.ctypes.data + 4 * i) % (4 * _W) != 0:  # peel to an aligned start
            o[i] = a[i] * np.float32(1.5) + np.float32(0.5)
            i += 1
        while i + _W <= n:
            _stream_axb(o, a, i, np.float32(1.5), np.float32(0.5))
            i += _W
        while i < n:
            o[i] = a[i] * np.float32(1.5) + np.float32(0.5)
            i += 1
        _sfence()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args(argv)
    from _common import machine_line, median_seconds

    nb.set_num_threads(args.threads)
    print(f"# {machine_line(args.threads)}; y = 1.5 x + 0.5, float32, median of {args.repeat}")
    print(f"{'MiB':>5}  {'ordinary ms':>11}  {'streaming ms':>12}  {'streaming/ordinary':>18}")
    rng = np.random.default_rng(0)
    for mib in (4, 8, 16, 64):
        x = rng.standard_normal((mib * 256, 1024), dtype=np.float32)
        y1 = np.empty_like(x)
        y2 = np.empty_like(x)
        _ordinary(x, y1)
        _streaming(x, y2)
        if not np.array_equal(y1, y2):
            raise SystemExit("the streaming kernel gave a different output")
        if "vmovnt" not in _streaming.inspect_asm(_streaming.signatures[0]):
            raise SystemExit("the streaming kernel compiled without non-temporal stores")
        t1 = 1e3 * median_seconds(lambda: _ordinary(x, y1), args.repeat)  # noqa: B023
        t2 = 1e3 * median_seconds(lambda: _streaming(x, y2), args.repeat)  # noqa: B023
        print(f"{mib:>5}  {t1:>11.3f}  {t2:>12.3f}  {t2 / t1:>18.2f}")


if __name__ == "__main__":
    main()
