#!/usr/bin/python3
"""Writes the PyTorch fixtures under tests/Unit/fixtures/pytorch/ with the system torch (Debian's 1.13).

    /usr/bin/python3 tests/reference/make_pytorch_fixtures.py

valid/     torch.save archives of an HF-like state dict (protocols 2, 4, 5; file and buffer prefixes; nested
           dicts), and expected.json: for every tensor its dtype, shape, strides (null when contiguous), storage
           offset and bytes, taken from torch itself.
other/     a legacy (pre-zip) torch file and a TorchScript archive.
attacks/   hostile archives and attacks.json: the error code BigModel must report for each and the names its
           message must contain. Payloads marked "live" are proven here to run code under a plain
           pickle.loads (they create their marker file); whether torch.load(weights_only=True) refuses each one
           is recorded alongside (BigModel is stricter in a few places: it never calls storage classes).
"""
import collections
import copyreg
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1] / "Unit" / "fixtures" / "pytorch"
VALID = ROOT / "valid"
OTHER = ROOT / "other"
ATTACKS = ROOT / "attacks"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)

SAFETENSORS_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.complex64: "C64",
}


# ----------------------------------------------------------------------------------------------------------------
# Valid archives
# ----------------------------------------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(8, 8, bias=False)
        self.o_proj = nn.Linear(8, 8, bias=True)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = Attention()
        self.input_layernorm = nn.LayerNorm(8)


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(16, 8)
        self.layers = nn.ModuleList([Layer()])
        self.norm = nn.LayerNorm(8)


class TinyForCausalLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Inner()
        self.lm_head = nn.Linear(8, 16, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied: one storage, two names


def hf_state_dict():
    """A module's state_dict() (an OrderedDict with _metadata) plus every dtype and view kind the reader handles."""
    torch.manual_seed(1234)
    model = TinyForCausalLM()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    sd = model.state_dict()
    q = sd["model.layers.0.self_attn.q_proj.weight"]
    bias = sd["model.layers.0.self_attn.o_proj.bias"]
    sd["model.layers.0.self_attn.q_proj.weight_t"] = q.t()                 # transposed view, same storage
    sd["model.layers.0.self_attn.q_proj.cols"] = q[:, 2:5]                 # strided view with an offset
    sd["model.layers.0.self_attn.o_proj.bias_tail"] = bias[3:]             # contiguous view with an offset
    sd["model.layers.0.mlp.up_proj.weight"] = torch.randn(4, 8).to(torch.float16)
    sd["model.layers.0.mlp.down_proj.weight"] = torch.randn(8, 4).to(torch.bfloat16)
    sd["model.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    sd["model.position_ids"] = torch.arange(12, dtype=torch.int64).unsqueeze(0)
    sd["model.attention_mask"] = torch.tensor([[True, False, True], [False, True, True]])
    sd["model.counts.int32"] = torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32)
    sd["model.counts.int16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["model.counts.int8"] = torch.tensor([-128, 5, 127], dtype=torch.int8)
    sd["model.counts.uint8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["model.phase"] = torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64)
    sd["model.expanded"] = torch.arange(3, dtype=torch.float32).expand(2, 3)  # stride 0
    sd["model.empty"] = torch.zeros(0, 4)
    sd["model.scale"] = torch.tensor(2.5)                                      # 0-dim
    sd["model.gate"] = nn.Parameter(torch.randn(3))                            # _rebuild_parameter
    return sd


def nested_checkpoint():
    torch.manual_seed(99)
    w = torch.randn(3, 2)
    return {
        "epoch": 3,
        "run": "fixture",
        "model": collections.OrderedDict([("encoder.weight", w), ("encoder.bias", torch.zeros(3)), ("steps", 10)]),
        "optimizer": {
            "state": {0: {"exp_avg": torch.ones(3, 2), "step": 5}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "ema": {"encoder.weight": w.t()},  # shares the storage of model.encoder.weight
        "history": [torch.tensor([1.0, 2.0])],
    }


def flatten(obj, prefix=""):
    """The dotted names BigModel gives a nested state dict: dict keys (str or int) and list indexes."""
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items() if isinstance(k, (str, int)) and not isinstance(k, bool)]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        return
    for k, v in items:
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, torch.Tensor):
            yield name, v
        else:
            yield from flatten(v, name)


def describe(t):
    t = t.detach()
    dense = t.contiguous()
    data = dense.view(torch.int16) if t.dtype == torch.bfloat16 else dense
    return {
        "dtype": SAFETENSORS_NAMES[t.dtype],
        "shape": list(t.shape),
        "strides": None if t.is_contiguous() else list(t.stride()),
        "storage_offset": t.storage_offset(),
        "element_size": t.element_size(),
        "hex": data.numpy().tobytes().hex(),
    }


def write_valid():
    VALID.mkdir(parents=True, exist_ok=True)
    expected = {}
    sd = hf_state_dict()
    for name, kwargs in [("hf_default.bin", {}), ("hf_protocol2.bin", {"pickle_protocol": 2}),
                         ("hf_protocol4.bin", {"pickle_protocol": 4}), ("hf_protocol5.bin", {"pickle_protocol": 5})]:
        torch.save(sd, VALID / name, **kwargs)
        expected[name] = [{"name": n, **describe(t)} for n, t in flatten(sd)]
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    (VALID / "hf_buffer.bin").write_bytes(buffer.getvalue())  # top folder "archive/"
    expected["hf_buffer.bin"] = expected["hf_default.bin"]
    nested = nested_checkpoint()
    torch.save(nested, VALID / "nested.pt")
    expected["nested.pt"] = [{"name": n, **describe(t)} for n, t in flatten(nested)]
    for name in expected:
        # torch 1.13's weights_only unpickler lacks the opcodes of protocols 4-5 and BINFLOAT; those files are our own.
        loaded = torch.load(VALID / name, weights_only=name in ("hf_default.bin", "hf_protocol2.bin", "hf_buffer.bin"))
        assert [n for n, _ in flatten(loaded)] == [e["name"] for e in expected[name]], name
    (VALID / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return expected


def write_other():
    OTHER.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(5)
    small = collections.OrderedDict([("weight", torch.randn(2, 2))])
    torch.save(small, OTHER / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(OTHER / "scripted.pt"))


# ----------------------------------------------------------------------------------------------------------------
# Attack corpus
# ----------------------------------------------------------------------------------------------------------------

def marker(name):
    return f"/tmp/bigmodel-pickle-attack-{name}.marker"


class Reduce:
    """Pickles as func(*args): the classic __reduce__ payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class RawStorage:
    def __init__(self, pid, data):
        self.pid, self.data = pid, data


class RawTensor:
    """A tensor described by its _rebuild_tensor_v2 arguments, so that tests control every field."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def __reduce_ex__(self, protocol):
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, RawStorage) else None


def dumps(obj, protocol):
    buffer = io.BytesIO()
    StoragePickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def zip_add(z, name, data, method=zipfile.ZIP_STORED):
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = method
    z.writestr(info, data)


def write_archive(path, pickled, extra=(), prefix="archive", pickle_method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as z:
        zip_add(z, f"{prefix}/data.pkl", pickled, pickle_method)
        zip_add(z, f"{prefix}/byteorder", b"little")
        for name, data, method in extra:
            zip_add(z, name, data, method)
        zip_add(z, f"{prefix}/version", b"3\n")


def float_bytes(n):
    return struct.pack(f"<{n}f", *[float(i) for i in range(n)])


def storage_tensor_state(pid, numel=4, shape=(4,), stride=(1,), offset=0):
    storage = RawStorage(pid, None)
    return collections.OrderedDict([("model.weight", RawTensor(storage, offset, shape, stride))])


def runs_code(name, pickled):
    """True when a plain pickle.loads of the payload creates its marker file (it really executes code)."""
    path = marker(name)
    if os.path.exists(path):
        os.remove(path)
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        f.write(pickled)
    try:
        subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())", f.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        for _ in range(50):
            if os.path.exists(path):
                break
            time.sleep(0.1)
        created = os.path.exists(path)
    finally:
        os.remove(f.name)
        if os.path.exists(path):
            os.remove(path)
    return created


def torch_refuses(path):
    """Whether torch.load(weights_only=True) of torch 1.13 refuses the archive (recorded for comparison)."""
    try:
        torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any refusal counts; success would be the failure
        return True
    return False


def write_attacks():
    ATTACKS.mkdir(parents=True, exist_ok=True)
    for old in ATTACKS.glob("*.bin"):
        old.unlink()
    manifest = []

    def attack(name, pickled, code, mentions, live=False, extra=(), prefix="archive", pickle_method=zipfile.ZIP_STORED,
               torch_check=True, limits=None):
        path = ATTACKS / f"{name}.bin"
        write_archive(path, pickled, extra, prefix, pickle_method)
        if live:
            assert runs_code(name, pickled), f"{name}: the payload does not execute under pickle.loads"
        entry = {"file": path.name, "code": code, "mentions": mentions, "marker": marker(name) if live else None,
                 "torch_weights_only": ("refuses" if torch_refuses(path) else "accepts") if torch_check else "not checked"}
        if limits:
            entry["limits"] = limits
        manifest.append(entry)

    m = marker
    # Code execution through globals, in every protocol.
    attack("os_system_protocol0", f"cos\nsystem\n(S'touch {m('os_system_protocol0')}'\ntR.".encode(),
           "PickleForbiddenGlobal", ["os.system"], live=True)
    attack("builtins_eval_protocol1", pickle.dumps(Reduce(eval, f"open('{m('builtins_eval_protocol1')}','w').close()"), protocol=1),
           "PickleForbiddenGlobal", ["builtins.eval"], live=True)
    attack("posix_system_protocol2",
           pickle.dumps(collections.OrderedDict([("model.weight", Reduce(os.system, f"touch {m('posix_system_protocol2')}"))]), protocol=2),
           "PickleForbiddenGlobal", ["posix.system"], live=True)
    attack("builtins_exec_protocol3", pickle.dumps(Reduce(exec, f"open('{m('builtins_exec_protocol3')}','w').close()"), protocol=3),
           "PickleForbiddenGlobal", ["builtins.exec"], live=True)
    attack("subprocess_popen_protocol4", pickle.dumps(Reduce(subprocess.Popen, ["touch", m("subprocess_popen_protocol4")]), protocol=4),
           "PickleForbiddenGlobal", ["subprocess.Popen"], live=True)
    attack("nested_os_system_protocol5",
           pickle.dumps({"state_dict": {"layers": [{"w": Reduce(os.system, f"touch {m('nested_os_system_protocol5')}")}]}}, protocol=5),
           "PickleForbiddenGlobal", ["posix.system"], live=True)
    # The same call spelled with the other instantiating opcodes.
    attack("inst_os_system_protocol0", f"(S'touch {m('inst_os_system_protocol0')}'\nios\nsystem\n.".encode(),
           "PickleForbiddenGlobal", ["os.system"], live=True)
    attack("obj_os_system_protocol1", f"(cos\nsystem\nS'touch {m('obj_os_system_protocol1')}'\no.".encode(),
           "PickleForbiddenGlobal", ["os.system"], live=True)
    attack("newobj_popen_protocol2", b"\x80\x02csubprocess\nPopen\nX\x04\x00\x00\x00true\x85\x81.",
           "PickleForbiddenGlobal", ["subprocess.Popen"])
    # STACK_GLOBAL variants: names from the memo, and a module switched to after a PROTO in mid-stream.
    cmd = f"touch {m('stack_global_memo_protocol4')}".encode()
    attack("stack_global_memo_protocol4",
           b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c" + bytes([len(cmd)]) + cmd + b"\x85R.",
           "PickleForbiddenGlobal", ["os.system"], live=True)
    cmd = f"touch {m('proto_switch_stack_global')}".encode()
    attack("proto_switch_stack_global",
           b"\x80\x02}q\x00X\x01\x00\x00\x00w\x80\x05\x8c\x05posix\x8c\x06system\x93\x8c" + bytes([len(cmd)]) + cmd + b"\x85Rs.",
           "PickleForbiddenGlobal", ["posix.system"], live=True)
    attack("stack_global_not_strings", b"\x80\x04K\x01K\x02\x93.", "PickleMalformed", ["STACK_GLOBAL"])
    # Globals that look harmless or torch-like but are not on the list.
    attack("copyreg_reconstructor", pickle.dumps(collections.OrderedDict(a=Reduce(copyreg._reconstructor, object, object, None)), protocol=2),
           "PickleForbiddenGlobal", ["copyreg._reconstructor"])
    attack("torch_load_from_bytes", b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x02\x80\x02\x85R.",
           "PickleForbiddenGlobal", ["torch.storage._load_from_bytes"])
    attack("builtins_getattr", b"\x80\x02c__builtin__\ngetattr\ncos\nsystem\n.", "PickleForbiddenGlobal", ["builtins.getattr"])
    attack("reduce_storage_class", b"\x80\x02ctorch\nFloatStorage\n)R.", "PickleForbiddenGlobal", ["torch.FloatStorage"])
    attack("build_on_global", b"\x80\x02ccollections\nOrderedDict\n}b.", "PickleForbiddenGlobal", ["collections.OrderedDict"])
    attack("reduce_non_callable", b"\x80\x02X\x04\x00\x00\x00evil)R.", "PickleForbiddenGlobal", ["REDUCE", "str"])
    attack("ext1_registry", b"\x80\x02\x82\x01.", "PickleForbiddenGlobal", ["EXT1"])
    attack("quantized_tensor", b"\x80\x02ctorch._utils\n_rebuild_qtensor\n.", "PickleUnsupportedTensorType", ["torch._utils._rebuild_qtensor"])
    # Opcodes and protocols outside what torch.save writes.
    attack("protocol6", b"\x80\x06}.", "PickleUnsupportedProtocol", ["6"])
    attack("unknown_opcode", b"\x80\x02}\xff.", "PickleInvalidOpcode", ["0xff"])
    attack("next_buffer", b"\x80\x05\x97.", "PickleInvalidOpcode", ["NEXT_BUFFER"])
    attack("truncated_pickle", pickle.dumps(collections.OrderedDict(a=1, b="x" * 40), protocol=2)[:-20], "PickleMalformed", ["truncated"])

    # Persistent ids that point outside the archive, at nothing, or at something other than a storage.
    data = float_bytes(4)
    ok_entry = [("archive/data/0", data, zipfile.ZIP_STORED)]
    for name, key, code, mention in [
        ("pid_parent_key", "../../../etc/passwd", "PickleZipEntryUnsafe", "../../../etc/passwd"),
        ("pid_absolute_key", "/etc/passwd", "PickleZipEntryUnsafe", "/etc/passwd"),
        ("pid_backslash_key", "..\\..\\evil", "PickleZipEntryUnsafe", "..\\..\\evil"),
        ("pid_missing_key", "7", "PickleZipEntryMissing", "archive/data/7"),
    ]:
        attack(name, dumps(storage_tensor_state(("storage", torch.FloatStorage, key, "cpu", 4)), 2), code, [mention], extra=ok_entry)
    attack("pid_module_kind", dumps(storage_tensor_state(("module", "os", "evil.py", "import os")), 2),
           "PickleForbiddenGlobal", ["module"], extra=ok_entry)
    # Views and storages that do not fit.
    attack("view_out_of_storage", dumps(storage_tensor_state(("storage", torch.FloatStorage, "0", "cpu", 4), shape=(2, 3), stride=(3, 1)), 2),
           "PickleStorageOutOfRange", ["model.weight"], extra=ok_entry)
    attack("storage_size_mismatch", dumps(storage_tensor_state(("storage", torch.FloatStorage, "0", "cpu", 100)), 2),
           "PickleStorageOutOfRange", ["'0'", "100"], extra=ok_entry)
    attack("compressed_storage", dumps(storage_tensor_state(("storage", torch.FloatStorage, "0", "cpu", 4)), 2),
           "PickleZipEntryCompressed", ["archive/data/0"], extra=[("archive/data/0", data, zipfile.ZIP_DEFLATED)])
    bomb = bytes(16 << 20)
    attack("zip_bomb_storage", dumps(storage_tensor_state(("storage", torch.FloatStorage, "0", "cpu", len(bomb) // 4), shape=(len(bomb) // 4,)), 2),
           "PickleZipEntryCompressed", ["archive/data/0"], extra=[("archive/data/0", bomb, zipfile.ZIP_DEFLATED)], torch_check=False)
    attack("zip_bomb_pickle", b"\x80\x02" + b"N0" * (8 << 20) + b"}.", "PickleTooLarge", ["data.pkl", "1048576"],
           pickle_method=zipfile.ZIP_DEFLATED, torch_check=False, limits={"MaxPickleBytes": 1 << 20})

    # Zip entries whose names would escape a folder if extracted.
    benign = pickle.dumps(collections.OrderedDict(), protocol=2)
    for name, entry in [("entry_parent_dir", "../evil.py"), ("entry_absolute", "/etc/cron.d/evil"),
                        ("entry_backslash", "archive\\..\\..\\evil.dll"), ("entry_drive_letter", "C:/Windows/evil.dll"),
                        ("entry_nested_parent", "archive/data/../../../evil.py")]:
        attack(name, benign, "PickleZipEntryUnsafe", [entry], extra=[(entry, b"payload", zipfile.ZIP_STORED)], torch_check=False)
        with zipfile.ZipFile(ATTACKS / f"{name}.bin") as z:
            assert entry in z.namelist(), f"{name}: zipfile rewrote the entry name"

    # A truncated archive: a real checkpoint cut short.
    whole = (VALID / "hf_default.bin").read_bytes()
    (ATTACKS / "truncated_archive.bin").write_bytes(whole[: len(whole) * 3 // 5])
    manifest.append({"file": "truncated_archive.bin", "code": "PickleZipCorrupt", "mentions": ["truncated"], "marker": None,
                     "torch_weights_only": "refuses" if torch_refuses(ATTACKS / "truncated_archive.bin") else "accepts"})

    (ATTACKS / "attacks.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main():
    expected = write_valid()
    write_other()
    manifest = write_attacks()
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    print(f"{len(expected)} valid archives, {len(manifest)} attacks, {total} bytes under {ROOT}")


if __name__ == "__main__":
    main()
