#!/usr/bin/env python3
"""Independent reference for the Llama family (Llama, Mistral, Qwen2) in plain numpy, float64, no KV cache.

Every step recomputes the whole sequence from scratch, written directly from the published architecture:
RMSNorm, rotary embeddings in transformers' rotate_half convention (optionally rope_scaling linear / llama3),
grouped-query attention, SwiGLU, biases wherever the checkpoint has them, tied or separate head, Mistral's
sliding window.

usage: llama_reference.py MODEL_DIR --ids 1,2,3 [--generate N]
prints JSON: {"generated": [ids...], "logits": [[...] per position of ids + generated]}
"""
import argparse
import json
import math
import sys

import numpy as np

import safetensors_numpy


def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rotary_frequencies(cfg, head_dim):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        out = []
        for f in inv:
            wavelength = 2 * math.pi / f
            if wavelength < original / high:
                out.append(f)
            elif wavelength > original / low:
                out.append(f / factor)
            else:
                smooth = (original / wavelength - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = np.array(out)
    elif kind != "default":
        raise ValueError(f"rope_scaling {kind} is not implemented by the reference")
    return inv


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(w, cfg, ids):
    prefix = "model." if "model.embed_tokens.weight" in w else ""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    window = cfg.get("sliding_window") if cfg.get("model_type") == "mistral" else None
    t = len(ids)

    x = w[prefix + "embed_tokens.weight"][np.array(ids)]
    freqs = np.outer(np.arange(t, dtype=np.float64), rotary_frequencies(cfg, head_dim))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    allowed = j <= i
    if window:
        allowed &= (i - j) < window

    def linear(h, name):
        out = h @ w[name + ".weight"].T
        if name + ".bias" in w:
            out = out + w[name + ".bias"]
        return out

    for layer in range(cfg["num_hidden_layers"]):
        p = f"{prefix}layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").reshape(t, heads, head_dim).transpose(1, 0, 2)
        k = linear(h, p + "self_attn.k_proj").reshape(t, kv_heads, head_dim).transpose(1, 0, 2)
        v = linear(h, p + "self_attn.v_proj").reshape(t, kv_heads, head_dim).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, heads // kv_heads, axis=0)
        v = np.repeat(v, heads // kv_heads, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores = np.where(allowed, scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        x = x + linear(attn.transpose(1, 0, 2).reshape(t, heads * head_dim), p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + linear(silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, w[prefix + "norm.weight"], eps)
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in w
    head = w[prefix + "embed_tokens.weight"] if tied else w["lm_head.weight"]
    return x @ head.T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--ids", required=True)
    parser.add_argument("--generate", type=int, default=0)
    args = parser.parse_args()
    cfg = safetensors_numpy.config(args.model)
    w = safetensors_numpy.load(args.model)
    ids = [int(s) for s in args.ids.split(",")]
    generated = []
    for _ in range(args.generate):
        logits = forward(w, cfg, ids + generated)
        generated.append(int(np.argmax(logits[-1])))
    logits = forward(w, cfg, ids + generated)
    json.dump({"generated": generated, "logits": logits.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
