#!/usr/bin/env python3
"""Writes model.safetensors.index.json exactly as transformers' save_pretrained does, for BigModel's comparison test.

Usage: index_json.py INPUT OUTPUT
INPUT is JSON: {"total_size": N, "weight_map": [[tensor, file], ...]}. OUTPUT receives
json.dumps({"metadata": {"total_size": N}, "weight_map": {...}}, indent=2, sort_keys=True) + "\\n".
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    index = {
        "metadata": {"total_size": spec["total_size"]},
        "weight_map": {name: file for name, file in spec["weight_map"]},
    }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
