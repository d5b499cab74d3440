#!/usr/bin/env python3
"""Writes the GGUF test fixtures in tests/fixtures/gguf/ with gguf-py (the reference writer and
dequantizer), so the C++ reader is checked against an implementation nobody here wrote.

Run with the reference venv:  /opt/refenv/bin/python tools/make_gguf_fixtures.py

Outputs:
  metadata.gguf / metadata.json   every metadata value type (scalars, strings, typed arrays, a
                                  nested array), alignment 64, two small F32 tensors; the JSON
                                  lists each key with its GGUF type and value as written.
  quants.gguf / quants/<T>.f32    one tensor per ggml type, random data (quantized by gguf-py, or
                                  random blocks for the K types gguf-py cannot quantize), and the
                                  float32 values gguf-py's dequantize gives (raw little-endian).
  smollm2_expected.json           facts about models/SmolLM2-135M-Instruct.Q4_1.gguf read with
                                  GGUFReader, and dequantized values at a few positions.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def f32(x):
    return float(np.float32(x))


# (key, gguf type, value, array element type, value as the reader must see it)
METADATA = [
    ("test.u8", V.UINT8, 200, None, 200),
    ("test.i8", V.INT8, -100, None, -100),
    ("test.u16", V.UINT16, 60000, None, 60000),
    ("test.i16", V.INT16, -30000, None, -30000),
    ("test.u32", V.UINT32, 4000000000, None, 4000000000),
    ("test.i32", V.INT32, -2000000000, None, -2000000000),
    ("test.u64", V.UINT64, 18000000000000000000, None, 18000000000000000000),
    ("test.i64", V.INT64, -9000000000000000000, None, -9000000000000000000),
    ("test.f32", V.FLOAT32, 3.14159, None, f32(3.14159)),
    ("test.f64", V.FLOAT64, 2.718281828459045, None, 2.718281828459045),
    ("test.bool_true", V.BOOL, True, None, True),
    ("test.bool_false", V.BOOL, False, None, False),
    ("test.string", V.STRING, "héllo, wörld ✓", None, "héllo, wörld ✓"),
    ("test.arr_u8", V.ARRAY, [0, 1, 255], V.UINT8, [0, 1, 255]),
    ("test.arr_i16", V.ARRAY, [-32768, 0, 32767], V.INT16, [-32768, 0, 32767]),
    ("test.arr_i32", V.ARRAY, [-1, 2, -3, 4], V.INT32, [-1, 2, -3, 4]),
    ("test.arr_u64", V.ARRAY, [1, 2**63, 2**64 - 1], V.UINT64, [1, 2**63, 2**64 - 1]),
    ("test.arr_f32", V.ARRAY, [0.5, -1.25, 1e-3], V.FLOAT32, [0.5, -1.25, f32(1e-3)]),
    ("test.arr_f64", V.ARRAY, [0.1, -0.2], V.FLOAT64, [0.1, -0.2]),
    ("test.arr_bool", V.ARRAY, [True, False, True], V.BOOL, [True, False, True]),
    ("test.arr_str", V.ARRAY, ["a", "", "ccc", "Ġthe"], V.STRING, ["a", "", "ccc", "Ġthe"]),
    ("test.nested", V.ARRAY, [[1, 2], [3, 4, 5]], None, [[1, 2], [3, 4, 5]]),
]


def write_metadata():
    path = os.path.join(OUT, "metadata.gguf")
    w = gguf.GGUFWriter(path, "testarch")
    w.add_custom_alignment(64)
    expected = {"general.architecture": {"type": "string", "value": "testarch"},
                "general.alignment": {"type": "uint32", "value": 64}}
    for key, vtype, value, sub, seen in METADATA:
        w.add_key_value(key, value, vtype, sub_type=sub)
        tname = vtype.name.lower() if sub is None else f"array[{sub.name.lower()}]"
        if key == "test.nested":
            tname = "array[array[int32]]"
        expected[key] = {"type": tname, "value": seen}
    # Shapes in numpy (HF) order; the file stores them reversed.
    a = np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32) / 7
    b = np.array([1.5, -2.5, 3.5], dtype=np.float32)
    w.add_tensor("t.a", a)
    w.add_tensor("t.b", b)
    expected["_tensors"] = {"t.a": {"shape": [2, 3, 32], "values": a.flatten().tolist()},
                            "t.b": {"shape": [3], "values": b.tolist()}}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "metadata.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)


LEGACY = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.BF16]
# gguf-py has no quantizer for these: random blocks with sane f16 scales at the given offsets.
K_TYPES = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def random_blocks(rng, qtype, n_blocks):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in K_TYPES[qtype]:
        d = (rng.uniform(1e-3, 0.1, size=n_blocks) * rng.choice([-1, 1], size=n_blocks))
        blocks[:, off:off + 2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def write_quants():
    rng = np.random.default_rng(1234)
    rows, cols = 4, 256
    path = os.path.join(OUT, "quants.gguf")
    os.makedirs(os.path.join(OUT, "quants"), exist_ok=True)
    w = gguf.GGUFWriter(path, "testarch")

    def emit(qtype, raw):
        name = qtype.name
        expected = gguf.quants.dequantize(raw, qtype).astype("<f4")
        assert expected.shape == (rows, cols), expected.shape
        w.add_tensor(name, raw, raw_dtype=qtype)
        expected.tofile(os.path.join(OUT, "quants", f"{name}.f32"))

    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[0, :8] = [0.0, -0.0, 65504.0, -65504.0, 6e-8, -6e-8, 1e-5, 1.0]  # f16 edge cases
    w.add_tensor("F32", x)
    x.astype("<f4").tofile(os.path.join(OUT, "quants", "F32.f32"))
    emit(Q.F16, x.astype(np.float16).view(np.uint8).reshape(rows, cols * 2))
    for qtype in LEGACY:
        emit(qtype, gguf.quants.quantize(rng.standard_normal((rows, cols)).astype(np.float32),
                                         qtype))
    for qtype in K_TYPES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        raw = random_blocks(rng, qtype, rows * cols // block_size)
        emit(qtype, raw.reshape(rows, -1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_model_expectations():
    if not os.path.exists(MODEL):
        print(f"skipping model expectations: {MODEL} is absent", file=sys.stderr)
        return
    r = gguf.GGUFReader(MODEL)
    fields = r.fields
    tokens = fields["tokenizer.ggml.tokens"]
    out = {
        "version": int(fields["GGUF.version"].parts[-1][0]),
        "tensor_count": len(r.tensors),
        "kv_count": int(fields["GGUF.kv_count"].parts[-1][0]),
        "architecture": bytes(fields["general.architecture"].parts[-1]).decode(),
        "block_count": int(fields["llama.block_count"].parts[-1][0]),
        "rms_eps": float(fields["llama.attention.layer_norm_rms_epsilon"].parts[-1][0]),
        "n_tokens": len(tokens.data),
        "first_tokens": [bytes(tokens.parts[i]).decode() for i in tokens.data[:4]],
        "tensors": {},
    }
    rng = np.random.default_rng(7)
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight",
                 "blk.0.attn_norm.weight"]:
        t = next(t for t in r.tensors if t.name == name)
        deq = gguf.quants.dequantize(t.data, t.tensor_type)  # numpy (HF) order
        flat = deq.reshape(-1)
        idx = sorted({0, flat.size - 1, *rng.integers(0, flat.size, size=14).tolist()})
        out["tensors"][name] = {
            "type": t.tensor_type.name,
            "shape": list(deq.shape),
            "ne": [int(v) for v in t.shape],
            "offset": int(t.data_offset),
            "index": [int(i) for i in idx],
            "values": [float(flat[i]) for i in idx],
        }
    with open(os.path.join(OUT, "smollm2_expected.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write_metadata()
    write_quants()
    write_model_expectations()
    total = 0
    for dirpath, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"wrote fixtures to {OUT}: {total} bytes")
