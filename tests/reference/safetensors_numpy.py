"""Reads safetensors checkpoints with numpy only: the header is parsed here, the data memory-mapped.

Shared by the reference implementations so they depend on nothing but numpy (no safetensors, no torch).
"""
import json
import os
import struct

import numpy as np

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1"}


def _read_file(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    data = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.asarray(data[base + begin: base + end])
        dtype = info["dtype"]
        if dtype == "BF16":
            values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _DTYPES:
            values = raw.view(_DTYPES[dtype])
        else:
            raise ValueError(f"{name}: dtype {dtype} is not supported by the reference reader")
        tensors[name] = values.reshape(info["shape"])
    return tensors


def load(folder):
    """All tensors of a model folder (model.safetensors or a sharded index) as float64 arrays."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        for key, value in _read_file(os.path.join(folder, name)).items():
            tensors[key] = value.astype(np.float64)
    return tensors


def config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)
