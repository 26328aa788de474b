#!/usr/bin/env python3
"""Independent reference for BERT sentence embeddings in plain numpy, float64.

Post-norm encoder with exact (erf) GELU, padding masked out of the keys, then mean pooling over the real tokens
(sentence-transformers) and optional L2 normalisation. Each sequence is encoded on its own, unpadded, so the
reference also checks that padding in the engine's batches changes nothing.

usage: bert_reference.py MODEL_DIR --batch '[[101, 7592, 102], [101, 102]]' [--normalize]
prints JSON: {"embeddings": [[...] per sequence]}
"""
import argparse
import json
import math
import sys

import numpy as np

import safetensors_numpy

_ERF = np.vectorize(math.erf)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))


def encode(w, cfg, ids):
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = cfg.get("layer_norm_eps", 1e-12)
    t = len(ids)
    e = prefix + "embeddings."
    x = w[e + "word_embeddings.weight"][np.array(ids)] + w[e + "position_embeddings.weight"][:t]
    if e + "token_type_embeddings.weight" in w:
        x = x + w[e + "token_type_embeddings.weight"][0]
    x = layer_norm(x, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], eps)

    def linear(h, name):
        return h @ w[name + ".weight"].T + w[name + ".bias"]

    for layer in range(cfg["num_hidden_layers"]):
        p = f"{prefix}encoder.layer.{layer}."
        q = linear(x, p + "attention.self.query").reshape(t, heads, head_dim).transpose(1, 0, 2)
        k = linear(x, p + "attention.self.key").reshape(t, heads, head_dim).transpose(1, 0, 2)
        v = linear(x, p + "attention.self.value").reshape(t, heads, head_dim).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        context = ((scores / scores.sum(axis=-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(t, hidden)
        x = layer_norm(x + linear(context, p + "attention.output.dense"),
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        inner = gelu(linear(x, p + "intermediate.dense"))
        x = layer_norm(x + linear(inner, p + "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", required=True)
    parser.add_argument("--normalize", action="store_true")
    args = parser.parse_args()
    cfg = safetensors_numpy.config(args.model)
    w = safetensors_numpy.load(args.model)
    result = []
    for ids in json.loads(args.batch):
        pooled = encode(w, cfg, ids).mean(axis=0)
        if args.normalize:
            pooled = pooled / max(np.linalg.norm(pooled), 1e-12)
        result.append(pooled.tolist())
    json.dump({"embeddings": result}, sys.stdout)


if __name__ == "__main__":
    main()
