"""transformers' decode speed on a random model of a preset's shape: the floor every user already has.

usage: python3 hf_decode.py PRESET.json OUT.json [--context 1024] [--new 64]
PRESET.json holds eagle3-node's TargetConfig fields (hiddenSize, numLayers, ...).
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

ap = argparse.ArgumentParser()
ap.add_argument("preset")
ap.add_argument("out")
ap.add_argument("--context", type=int, default=1024)
ap.add_argument("--new", type=int, default=64)
ap.add_argument("--layers", type=int, default=0, help="limit layers (0 = all)")
args = ap.parse_args()
p = json.load(open(args.preset))
cls = Qwen3Config if p["arch"] == "qwen3" else Qwen2Config
layers = args.layers or p["numLayers"]
cfg = cls(vocab_size=p["vocabSize"], hidden_size=p["hiddenSize"], intermediate_size=p["intermediateSize"],
          num_hidden_layers=layers, num_attention_heads=p["numHeads"], num_key_value_heads=p["numKvHeads"],
          head_dim=p["headDim"], max_position_embeddings=p["maxPositionEmbeddings"], rms_norm_eps=p["rmsNormEps"],
          tie_word_embeddings=p["tieWordEmbeddings"], rope_parameters={"rope_type": "default", "rope_theta": p["ropeTheta"]})
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="eager").eval()
x = torch.randint(0, p["vocabSize"], (1, args.context), device="cuda")
with torch.no_grad():
    model.generate(x[:, :32], max_new_tokens=8, do_sample=False, min_new_tokens=8)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(x, max_new_tokens=1, do_sample=False, min_new_tokens=1)
    torch.cuda.synchronize()
    t_prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.generate(x, max_new_tokens=args.new + 1, do_sample=False, min_new_tokens=args.new + 1)
    torch.cuda.synchronize()
    t = time.perf_counter() - t0 - t_prefill
result = {"transformersTokensPerSecond": round(args.new / t, 2), "transformersVersion": __import__("transformers").__version__,
          "context": args.context, "layers": layers, "attention": "eager", "cache": "dynamic"}
json.dump(result, open(args.out, "w"), indent=1)
print(result)
