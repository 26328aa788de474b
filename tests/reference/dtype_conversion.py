#!/usr/bin/env python3
"""Reference float conversions computed by torch, for BigModel's bit-exactness test of DTypeConverter.

Usage: dtype_conversion.py OUTPUT_DIR

Writes, for every source dtype, a little-endian input file of bit patterns (all 65,536 for F16 and BF16; special
values, subnormals, rounding ties at every position, a strided sweep of the whole 32-bit space and random patterns for
F32; special values, ties that round twice and random patterns for F64), one output file per target dtype holding
torch's `tensor.to(target)` of those inputs, and manifest.json describing them. Deterministic: same output every run.
"""
import json
import os
import sys

import numpy as np
import torch

SEED = 20260101
TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
BITS = {"F64": np.uint64, "F32": np.uint32, "F16": np.uint16, "BF16": np.uint16}
SIGNED = {np.uint64: np.int64, np.uint32: np.int32, np.uint16: np.int16}
TORCH_INT = {np.uint64: torch.int64, np.uint32: torch.int32, np.uint16: torch.int16}
TARGETS = {"F64": ["F32", "F16", "BF16"], "F32": ["F16", "BF16"], "F16": ["F32", "BF16"], "BF16": ["F32", "F16"]}


def to_tensor(bits, dtype):
    signed = bits.view(SIGNED[BITS[dtype]])
    return torch.from_numpy(signed.copy()).view(TORCH[dtype])


def from_tensor(tensor, dtype):
    unsigned = BITS[dtype]
    return tensor.contiguous().view(TORCH_INT[unsigned]).numpy().view(unsigned)


def f32_inputs(rng):
    parts = []
    specials = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
                0x7FBFFFFF, 0xFFBFFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FC00001, 0x7FA00000, 0x00000001, 0x80000001,
                0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000,
                0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x477FFFFF, 0x47800000, 0x38800000, 0x387FFFFF,
                0x33000000, 0x33000001, 0x32FFFFFF, 0x33800000, 0x7F7F8000, 0x7F7F7FFF, 0x7F7FFFFF]
    parts.append(np.array(specials, dtype=np.uint32))
    # Every float32 subnormal with one bit set, and every power of two.
    parts.append(np.array([1 << b for b in range(23)], dtype=np.uint32))
    parts.append(np.array([e << 23 for e in range(256)], dtype=np.uint32))
    # bfloat16 rounding: each sign and exponent, kept mantissa ending in 0 or 1 (or all ones, to carry), and the 16
    # dropped bits just below, at and above the half-way point.
    exps = np.arange(256, dtype=np.uint32)
    for sign in (0, 0x80000000):
        for kept in (0x00, 0x01, 0x02, 0x41, 0x7E, 0x7F):
            for low in (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF):
                parts.append(sign | (exps << 23) | np.uint32(kept << 16) | np.uint32(low))
    # float16 rounding of normal results: the 13 dropped bits around half-way, exponents across the float16 range.
    exps16 = np.arange(100, 146, dtype=np.uint32)
    for sign in (0, 0x80000000):
        for kept in (0x000, 0x001, 0x002, 0x155, 0x3FE, 0x3FF):
            for low in (0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF):
                parts.append(sign | (exps16 << 23) | np.uint32(kept << 13) | np.uint32(low))
    # float16 subnormal results: exact ties k + 1/2 steps of 2^-24 and their float32 neighbours.
    k = np.arange(0, 1025, dtype=np.float64)
    ties = ((k + 0.5) * 2.0 ** -24).astype(np.float32)
    below = np.nextafter(ties, np.float32(0))
    above = np.nextafter(ties, np.float32(1))
    exact = (k * 2.0 ** -24).astype(np.float32)
    for arr in (ties, below, above, exact):
        bits = arr.view(np.uint32)
        parts.append(bits)
        parts.append(bits | np.uint32(0x80000000))
    # A strided sweep of the whole space and random patterns.
    parts.append((np.arange(0, 1 << 32, 4099, dtype=np.uint64) + 17).astype(np.uint32))
    parts.append(rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32))
    return np.concatenate(parts).astype(np.uint32)


def f64_inputs(rng):
    parts = []
    specials = [0x0000000000000000, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000,
                0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFF0000000000001,
                0x7FF4000000000000, 0x7FF7FFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x7FF8000020000000,
                0x0000000000000001, 0x8000000000000001, 0x000FFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF,
                0x3FF0000000000000, 0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x36A0000000000000,
                0x3690000000000000, 0x36A0000000000001, 0x40EFFE0000000000, 0x40EFFE0000000001, 0x40F0000000000000]
    parts.append(np.array(specials, dtype=np.uint64))
    # Float32 ties and their double neighbours (first rounding), and float16 ties nudged by less than a float32 ulp
    # (where rounding twice differs from rounding once).
    x = rng.integers(0x00800000, 0x7F000000, size=1 << 16, dtype=np.uint64).astype(np.uint32).view(np.float32)
    xs = x.astype(np.float64)
    mid = (xs + np.nextafter(x, np.float32(np.inf)).astype(np.float64)) / 2
    for arr in (mid, np.nextafter(mid, 0.0), np.nextafter(mid, np.inf)):
        parts.append(arr.view(np.uint64))
    h = rng.integers(0, 0x7C00, size=1 << 16, dtype=np.uint64).astype(np.uint16).view(np.float16).astype(np.float64)
    hn = np.nextafter(h.astype(np.float16), np.float16(np.inf)).astype(np.float64)
    hmid = (h + hn) / 2
    for nudge in (-2.0 ** -30, -2.0 ** -40, 0.0, 2.0 ** -40, 2.0 ** -30):
        arr = hmid * (1 + nudge)
        parts.append(arr.view(np.uint64))
        parts.append((-arr).view(np.uint64))
    b = (rng.integers(0, 0x7F80, size=1 << 16, dtype=np.uint64).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    # Half a bfloat16 step above b is b's float32 bits plus 0x8000.
    bmid = (b.astype(np.float32).view(np.uint32) + np.uint32(0x8000)).view(np.float32).astype(np.float64)
    for nudge in (-2.0 ** -35, 0.0, 2.0 ** -35):
        parts.append((bmid * (1 + nudge)).view(np.uint64))
    parts.append(rng.integers(0, np.iinfo(np.uint64).max, size=1 << 18, dtype=np.uint64, endpoint=True))
    return np.concatenate(parts).astype(np.uint64)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    inputs = {
        "F16": np.arange(1 << 16, dtype=np.uint32).astype(np.uint16),
        "BF16": np.arange(1 << 16, dtype=np.uint32).astype(np.uint16),
        "F32": f32_inputs(rng),
        "F64": f64_inputs(rng),
    }
    cases = []
    for source, bits in inputs.items():
        in_name = f"{source}.in"
        bits.astype(bits.dtype.newbyteorder("<")).tofile(os.path.join(out, in_name))
        tensor = to_tensor(bits, source)
        for target in TARGETS[source]:
            converted = from_tensor(tensor.to(TORCH[target]), target)
            out_name = f"{source}_to_{target}.out"
            converted.astype(converted.dtype.newbyteorder("<")).tofile(os.path.join(out, out_name))
            cases.append({"from": source, "to": target, "count": int(bits.size), "input": in_name, "output": out_name})
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=2)
    print(f"torch {torch.__version__}: {len(cases)} conversions written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
