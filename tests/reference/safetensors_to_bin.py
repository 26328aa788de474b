#!/usr/bin/env python3
"""Rewrites a model folder's safetensors weights as a PyTorch pytorch_model.bin (torch.save, zip format).

usage: safetensors_to_bin.py SOURCE_DIR DEST_DIR [--views]
--views stores every 2-D weight as the transpose of a contiguous tensor (strides [1, rows]) and the q/k projections
of each layer as slices of one shared storage, the way real archives can hold them.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch

import safetensors_numpy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--views", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dest, exist_ok=True)
    shutil.copy(os.path.join(args.source, "config.json"), os.path.join(args.dest, "config.json"))
    weights = {k: torch.from_numpy(np.ascontiguousarray(v.astype(np.float32))) for k, v in safetensors_numpy.load(args.source).items()}
    state = {}
    for name, tensor in weights.items():
        if args.views and tensor.dim() == 2:
            state[name] = tensor.t().contiguous().t()
        else:
            state[name] = tensor
    if args.views:
        for name in list(state):
            if name.endswith("self_attn.q_proj.weight"):
                k_name = name.replace("q_proj", "k_proj")
                q, k = weights[name], weights[k_name]
                both = torch.cat([q, k], 0)
                state[name] = both[: q.shape[0]]
                state[k_name] = both[q.shape[0]:]
    torch.save(state, os.path.join(args.dest, "pytorch_model.bin"))
    print(json.dumps({"tensors": len(state)}))


if __name__ == "__main__":
    main()
