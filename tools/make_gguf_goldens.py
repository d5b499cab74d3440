#!/usr/bin/env python3
"""GGUF copies of the tiny attention-variant fixtures, made by llama.cpp's own converter.

For each fixture in FIXTURES (attention variants, DeepSeek, every-layer-sparse Qwen3-MoE; written by
make_golden.py), this runs llama.cpp's convert_hf_to_gguf.py (--outtype f32) on a copy of the
fixture folder and writes <fixture>/model.gguf. The converter, not this script, decides the tensor
names, Gemma's +1 on norm weights, Phi-3's fused tensors and rope factor tensors, and so on, so an
engine's GGUF mapping is checked against llama.cpp's rather than against our reading of it.

The converter wants a tokenizer. The fixtures have none (their prompts are token ids), so a
SentencePiece BPE model with exactly the fixtures' 512 ids is trained here, deterministically, on
seeded random text, and put into the temporary copy only. The GGUF holds its 512 pieces; they mean
nothing and only fill the vocabulary the format requires.

A GGUF says less than config.json. Where llama.cpp's reading of the GGUF differs from the HF model
(see GGUF_READING), <fixture>/gguf_golden.json and gguf_logits_<i>.bin hold HF's outputs with the
config changed to that reading, for the same prompt ids; elsewhere golden.json holds for the GGUF.

  python tools/make_gguf_goldens.py                 # write model.gguf (+ gguf goldens)
  python tools/make_gguf_goldens.py --verify        # reconvert, recompute, compare; write nothing
  python tools/make_gguf_goldens.py --llama-cpp DIR # a llama.cpp tree instead of the sdist's
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers

import make_golden as mg

REPO = Path(__file__).resolve().parent.parent
SDIST = Path("/tmp/sdist/llama_cpp_python-0.3.36.tar.gz")
SDIST_LLAMA_CPP = "llama_cpp_python-0.3.36/vendor/llama.cpp"
# From the sdist's CHANGELOG (its newest "update llama.cpp" entry).
LLAMA_CPP_VERSION = "llama-cpp-python 0.3.36 sdist, vendored llama.cpp ggml-org/llama.cpp@0c1e57098"

FIXTURES = ("tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-phi3-longrope",
            "tiny-deepseek-v2-lite", "tiny-deepseek-v2", "tiny-deepseek-v3",
            "tiny-qwen3-moe-sparse")

# llama.cpp's DeepSeek and Qwen3-MoE converters accept only BPE vocabularies: DeepSeek's the ones
# it recognises, Qwen3-MoE's (through Qwen2-MoE) a GPT-2 style tokenizer that transformers'
# AutoTokenizer loads (the SentencePiece filler is not one: it fails there). So for those
# fixtures the converter runs with its vocabulary step swapped for the SentencePiece one
# (everything else, tensors and keys included, is its own).
VOCAB_SWAP = {"tiny-deepseek": ("conversion.deepseek", "DeepseekV2Model"),
              "tiny-qwen3-moe": ("conversion.qwen", "Qwen3MoeModel")}
VOCAB_WRAPPER = """import importlib, runpy, sys
tree, module, cls = sys.argv[1:4]
sys.path[:0] = [tree, tree + "/gguf-py"]
model = getattr(importlib.import_module(module), cls)
model.set_vocab = lambda self: self._set_vocab_sentencepiece()
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[4:]
runpy.run_path(tree + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def _no_window(config) -> None:
    config.sliding_window = None


def _scale_by_head_dim(config) -> None:
    config.query_pre_attn_scalar = config.head_dim


def _mscale_is_mscale_all_dim(config) -> None:
    config.rope_parameters["mscale"] = config.rope_parameters["mscale_all_dim"]


# What llama.cpp (the version above) makes of the GGUF where it differs from config.json:
#  - tiny-mistral: general.architecture "llama", which has no sliding-window key: no window.
#  - Gemma 2 / 3: query_pre_attn_scalar is not written; llama.cpp scales scores by
#    1/sqrt(head_dim) (1/sqrt(hidden/heads) only for the 27B models, told apart by layer count).
#    The sliding pattern is not written either: llama.cpp assumes every 2nd (Gemma 2, from layer
#    0) and 5 of 6 (Gemma 3) layers sliding, which is what the fixtures' layer_types say.
#  - tiny-deepseek-v3: YaRN's mscale is not written (only rope.scaling.yarn_log_multiplier =
#    0.1 x mscale_all_dim); read as mscale = mscale_all_dim, i.e. cos/sin unscaled (V2's fixtures
#    have them equal already).
GGUF_READING = {
    "tiny-mistral": ("sliding_window = None (the llama architecture has no window key)",
                     _no_window),
    "tiny-gemma2": ("query_pre_attn_scalar = head_dim (not in the GGUF; llama.cpp scales by "
                    "1/sqrt(head_dim) except for the 27B)", _scale_by_head_dim),
    "tiny-gemma3": ("query_pre_attn_scalar = head_dim (not in the GGUF; llama.cpp scales by "
                    "1/sqrt(head_dim) except for the 27B)", _scale_by_head_dim),
    "tiny-deepseek-v3": ("mscale = mscale_all_dim (the GGUF keeps only yarn_log_multiplier)",
                         _mscale_is_mscale_all_dim),
}


# llama.cpp's vocabulary loader looks these up by name in a model called "phi3" (and fails
# without them), so the Phi-3 GGUFs' filler vocabulary has them as user-defined pieces.
EXTRA_PIECES = {"tiny-phi3": ("<|endoftext|>",), "tiny-phi3-longrope": ("<|endoftext|>",)}


def tokenizer_model(extra: tuple = ()) -> bytes:
    """A 512-piece SentencePiece BPE model (3 specials, `extra`, 256 byte pieces, then merges and
    characters), trained single-threaded on seeded text: the same bytes every run."""
    import sentencepiece as spm  # noqa: PLC0415

    rng = np.random.default_rng(7)
    letters = np.array(list("etaoinshrdlucmfwygpbvkxqjz"))
    p = np.linspace(2.0, 0.2, 26)
    p /= p.sum()
    lines = [" ".join("".join(rng.choice(letters, rng.integers(1, 9), p=p)) for _ in range(12))
             for _ in range(3000)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=512, model_type="bpe",
        byte_fallback=True, num_threads=1, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, user_defined_symbols=list(extra), minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    assert sp.vocab_size() == 512, f"tokenizer has {sp.vocab_size()} pieces, want 512"
    return buf.getvalue()


def llama_cpp_tree(arg: Path | None, scratch: Path) -> Path:
    if arg:
        return arg
    with tarfile.open(SDIST) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(SDIST_LLAMA_CPP + "/") and
                   (m.name.endswith(".py") or "/gguf-py/" in m.name)]
        tar.extractall(scratch, members=members, filter="data")
    return scratch / SDIST_LLAMA_CPP


def convert(llama_cpp: Path, fixture: Path, tok: bytes, out: Path, scratch: Path) -> None:
    src = scratch / fixture.name
    shutil.copytree(fixture, src, ignore=shutil.ignore_patterns("*.gguf", "*golden*", "*.bin"))
    (src / "tokenizer.model").write_bytes(tok)
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"), NO_LOCAL_GGUF="")
    cmd = [sys.executable, "convert_hf_to_gguf.py", str(src), "--outtype", "f32",
           "--outfile", str(out)]
    swap = [v for k, v in VOCAB_SWAP.items() if fixture.name.startswith(k)]
    if swap:
        wrapper = scratch / "convert_vocab_swap.py"
        wrapper.write_text(VOCAB_WRAPPER)
        cmd[1:2] = [str(wrapper), str(llama_cpp), *swap[0]]
    run = subprocess.run(cmd, cwd=llama_cpp, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{fixture.name}: convert_hf_to_gguf.py failed:\n{run.stderr[-4000:]}")


def gguf_goldens(name: str, folder: Path, device: str, verify: mg.Compare | None) -> None:
    """HF's outputs under llama.cpp's reading of the GGUF (GGUF_READING), for golden.json's ids."""
    what, mutate = GGUF_READING[name]
    config = transformers.AutoConfig.from_pretrained(folder)
    mutate(config)
    model = mg.load_hf(folder, device, config=config)
    base = json.loads((folder / "golden.json").read_text())
    stored = json.loads((folder / "gguf_golden.json").read_text()) if verify else None
    prompts = []
    for i, p in enumerate(base["prompts"]):
        ids = p["ids"]
        gen, margins = mg.greedy(model, ids, mg.TINY_GREEDY, device)
        label = f"{name} gguf prompt {i}"
        worst = mg.check_consistency(model, ids, gen, device, label)
        logits = mg.forward_logits(model, ids, device)
        entry = {"ids": ids, "logits_file": f"gguf_logits_{i}.bin",
                 "logits_shape": list(logits.shape), "greedy": gen,
                 "greedy_margins": [round(m, 6) for m in margins]}
        if verify:
            want = stored["prompts"][i]
            verify.equal(f"{label} greedy", gen, want["greedy"])
            verify.stored_logits(label, logits, folder, want, tol=1e-4)
        else:
            mg.write_logits(folder / entry["logits_file"], logits)
        change = float((logits.cpu() - torch.from_numpy(mg.read_logits(
            folder / p["logits_file"], p["logits_shape"]))).abs().max())
        print(f"  {label}: consistency={worst:.2g} min_margin={min(margins):.4f} "
              f"distinct={len(set(gen))} max |logit - golden.json's| = {change:.3g}")
        prompts.append(entry)
    golden = {"prompts": prompts, "meta": mg.meta({
        "model": f"{name}/model.gguf", "gguf_reading": what, "llama_cpp": LLAMA_CPP_VERSION,
        "note": "HF outputs with config.json changed to what llama.cpp reads from model.gguf; "
                "logits of all prompt positions; greedy = argmax chain, no eos stopping"})}
    if not verify:
        (folder / "gguf_golden.json").write_text(json.dumps(golden, indent=1) + "\n")


# ----------------------------------------------------------------------------- llama.cpp check

# Evaluates token ids with llama.cpp from a GGUF and writes the logits of every position
# (float32 [N, V]): <out>_full.bin from one batch, <out>_inc.bin from the first `split` tokens,
# the rest of the prompt, then one token per call. float32 KV cache, no flash attention.
CHECK_MAIN = r"""
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static bool eval(llama_context * ctx, const std::vector<llama_token> & ids, int begin, int end,
                 int n_vocab, std::vector<float> & out) {
    llama_batch b = llama_batch_init(end - begin, 0, 1);
    for (int i = begin; i < end; ++i) {
        const int k = i - begin;
        b.token[k] = ids[i]; b.pos[k] = i; b.n_seq_id[k] = 1; b.seq_id[k][0] = 0; b.logits[k] = 1;
    }
    b.n_tokens = end - begin;
    const bool ok = llama_decode(ctx, b) == 0;
    for (int k = 0; ok && k < end - begin; ++k) {
        const float * l = llama_get_logits_ith(ctx, k);
        out.insert(out.end(), l, l + n_vocab);
    }
    llama_batch_free(b);
    return ok;
}

static void dump(const std::string & path, const std::vector<float> & v) {
    FILE * f = fopen(path.c_str(), "wb");
    fwrite(v.data(), sizeof(float), v.size(), f);
    fclose(f);
}

int main(int argc, char ** argv) {  // model.gguf split T out id...
    if (argc < 6) return 2;
    const int split = atoi(argv[2]), T = atoi(argv[3]);
    const std::string out = argv[4];
    std::vector<llama_token> ids;
    for (int i = 5; i < argc; ++i) ids.push_back(atoi(argv[i]));
    const int N = (int) ids.size();
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 3;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 128; cp.n_batch = 128; cp.n_ubatch = 128; cp.n_threads = 2; cp.n_threads_batch = 2;
    cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) return 4;
    std::vector<float> full, inc;
    if (!eval(ctx, ids, 0, N, n_vocab, full)) return 5;
    llama_memory_clear(llama_get_memory(ctx), true);
    if (!eval(ctx, ids, 0, split, n_vocab, inc)) return 6;
    if (split < T && !eval(ctx, ids, split, T, n_vocab, inc)) return 7;
    for (int i = T; i < N; ++i) if (!eval(ctx, ids, i, i + 1, n_vocab, inc)) return 8;
    dump(out + "_full.bin", full);
    dump(out + "_inc.bin", inc);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
"""

CHECK_CMAKE = """cmake_minimum_required(VERSION 3.14)
project(gguf_golden_check C CXX)
foreach(opt COMMON TESTS EXAMPLES TOOLS SERVER APP)
  set(LLAMA_BUILD_${opt} OFF CACHE BOOL "" FORCE)
endforeach()
set(LLAMA_CURL OFF CACHE BOOL "" FORCE)
add_subdirectory(../llama.cpp llama.cpp)
add_executable(check main.cpp)
target_link_libraries(check PRIVATE llama)
"""


def build_check(work: Path, jobs: int) -> Path:
    """llama.cpp (CPU) from the sdist with its f16 GELU table turned off (ggml's CPU GELU is
    otherwise a float16 lookup, about 1e-3 off), plus the driver above."""
    tree = work / "llama.cpp"
    if not tree.exists():
        with tarfile.open(SDIST) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(SDIST_LLAMA_CPP + "/")]
            tar.extractall(work, members=members, filter="data")
        (work / SDIST_LLAMA_CPP).rename(tree)
        vec = tree / "ggml" / "src" / "ggml-cpu" / "vec.h"
        text = vec.read_text()
        assert "#define GGML_GELU_FP16\n" in text, f"{vec}: GGML_GELU_FP16 not found"
        vec.write_text(text.replace("#define GGML_GELU_FP16\n", "// GGML_GELU_FP16 off\n"))
    driver = work / "driver"
    driver.mkdir(exist_ok=True)
    (driver / "main.cpp").write_text(CHECK_MAIN)
    (driver / "CMakeLists.txt").write_text(CHECK_CMAKE)
    build = work / "build"
    for cmd in (["cmake", "-S", str(driver), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 "-DGGML_CUDA=OFF"], ["cmake", "--build", str(build), "-j", str(jobs),
                                      "--target", "check"]):
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    return build / "check"


def llama_cpp_check(names: list[str], out: Path, work: Path, jobs: int) -> list[str]:
    """Runs llama.cpp on each model.gguf with the ids of gguf_golden.json (else golden.json):
    prompt + greedy[:-1] in one batch, and chunked prefill + decode. Its prompt logits must match
    within 1e-4 (relative to max |logit|) and its argmax chain must be the greedy tokens."""
    exe = build_check(work, jobs)
    failures = []
    for name in names:
        folder = out / name
        gname = "gguf_golden.json" if (folder / "gguf_golden.json").exists() else "golden.json"
        golden = json.loads((folder / gname).read_text())
        for i, p in enumerate(golden["prompts"]):
            T = len(p["ids"])
            seq = p["ids"] + p["greedy"][:-1]
            stem = work / f"{name}_{i}"
            cmd = [str(exe), str(folder / "model.gguf"), str(min(T, max(5, T // 2))), str(T),
                   str(stem)] + [str(t) for t in seq]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                failures.append(f"{name} prompt {i}: llama.cpp exited {run.returncode}: "
                                f"{run.stderr[-500:]}")
                continue
            want = mg.read_logits(folder / p["logits_file"], p["logits_shape"])
            for mode in ("full", "inc"):
                got = np.fromfile(f"{stem}_{mode}.bin", dtype="<f4").reshape(len(seq), -1)
                rel = float(np.abs(got[:T] - want).max()) / max(1.0, float(np.abs(want).max()))
                chain = got[T - 1:].argmax(-1).tolist()
                print(f"  llama.cpp {name} vs {gname} prompt {i} ({mode}): logits rel {rel:.2g}, "
                      f"greedy {'same' if chain == p['greedy'] else 'DIFFERENT'}")
                if rel > 1e-4 or chain != p["greedy"]:
                    failures.append(f"{name} prompt {i} ({mode}): llama.cpp differs "
                                    f"(rel {rel:.3g}, greedy {chain})")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--llama-cpp", type=Path, default=None,
                    help=f"llama.cpp tree with convert_hf_to_gguf.py (default: from {SDIST})")
    ap.add_argument("--only", default="", help="comma list of fixture names")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify", action="store_true",
                    help="reconvert and recompute; compare with the committed files")
    ap.add_argument("--llama-cpp-check", type=Path, default=None, metavar="DIR",
                    help="build llama.cpp (CPU) in DIR and run it on the committed GGUFs "
                         "(~10 min on 2 cores the first time); write nothing else")
    ap.add_argument("--jobs", type=int, default=2, help="build jobs for --llama-cpp-check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    names = [n for n in FIXTURES if not args.only or n in args.only.split(",")]
    if args.llama_cpp_check:
        args.llama_cpp_check.mkdir(parents=True, exist_ok=True)
        failures = llama_cpp_check(names, args.out, args.llama_cpp_check.resolve(), args.jobs)
        for f in failures:
            print("FAIL:", f)
        return 1 if failures else 0
    verify = mg.Compare() if args.verify else None
    toks = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        llama_cpp = llama_cpp_tree(args.llama_cpp, scratch)
        for name in names:
            folder = args.out / name
            target = scratch / f"{name}.gguf" if verify else folder / "model.gguf"
            extra = EXTRA_PIECES.get(name, ())
            if extra not in toks:
                toks[extra] = tokenizer_model(extra)
            convert(llama_cpp, folder, toks[extra], target, scratch)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
            print(f"{name}: model.gguf {target.stat().st_size} bytes, sha256 {digest}...")
            if verify and target.read_bytes() != (folder / "model.gguf").read_bytes():
                verify.failures.append(f"{name}: reconverted model.gguf differs from the file")
            if name in GGUF_READING:
                gguf_goldens(name, folder, args.device, verify)
    return verify.report() if verify else 0


if __name__ == "__main__":
    sys.exit(main())
