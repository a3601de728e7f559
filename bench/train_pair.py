"""A realistic trained target/draft pair for measuring EAGLE-3 acceptance, made on the GPU machine.

Trains a small Qwen3-architecture target (~100M parameters, most in its 151,936-row embedding) on
the Python standard library's source with the real Qwen3 tokenizer, then an EAGLE-3 head for it
with the training-time-test objective (7 unrolled steps, loss weights 0.8^k, draft vocabulary =
the 32,000 most frequent training tokens), following eagle3-reference.md §5. Saves the target as a
Hugging Face checkpoint and the head in SpecForge/sglang format (model.safetensors + config.json
with d2t/t2d), so eagle3-node loads them like published ones.

usage: python3 bench/train_pair.py TOKENIZER_DIR OUT_DIR [--target-seconds 200] [--draft-seconds 150]
"""
import argparse
import glob
import json
import math
import os
import sys
import sysconfig
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

ap = argparse.ArgumentParser()
ap.add_argument("tokenizer")
ap.add_argument("out")
ap.add_argument("--target-seconds", type=float, default=200)
ap.add_argument("--draft-seconds", type=float, default=150)
ap.add_argument("--tokens", type=int, default=6_000_000)
args = ap.parse_args()
torch.manual_seed(0)
dev = "cuda"
T0 = time.time()
log = lambda *a: print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)

# --- data: the standard library's Python source, tokenised once ---------------------------------
tok = AutoTokenizer.from_pretrained(args.tokenizer)
files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True))
texts, size = [], 0
for f in files:
    try:
        t = open(f, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        continue
    texts.append(t)
    size += len(t)
    if size > args.tokens * 4:
        break
ids = []
for i in range(0, len(texts), 256):
    for seq in tok(texts[i:i + 256], add_special_tokens=False)["input_ids"]:
        ids.extend(seq + [tok.eos_token_id])
ids = torch.tensor(ids[: args.tokens], dtype=torch.long)
split = int(len(ids) * 0.98)
train, held = ids[:split], ids[split:]
log(f"{len(files)} files, {len(ids)} tokens")
SEQ, BATCH = 512, 16


def batch(src, n=BATCH):
    starts = torch.randint(0, len(src) - SEQ - 1, (n,))
    return torch.stack([src[s:s + SEQ] for s in starts]).to(dev)


# --- target: Qwen3, 8 layers, hidden 512, tied embeddings ---------------------------------------
cfg = Qwen3Config(vocab_size=151936, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=64, max_position_embeddings=4096,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6})
target = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(dev)
opt = torch.optim.AdamW(target.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
steps, deadline = 0, time.time() + args.target_seconds
while time.time() < deadline:
    lr = 2e-3 * min(1.0, (steps + 1) / 100) * max(0.1, 1 - (time.time() - deadline + args.target_seconds) / args.target_seconds)
    for g in opt.param_groups:
        g["lr"] = lr
    x = batch(train)
    with torch.autocast("cuda", torch.bfloat16):
        loss = target(x, labels=x).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(target.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps += 1
    if steps % 200 == 0:
        log(f"target step {steps} loss {loss.item():.3f}")
target.eval()
with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
    xh = batch(held, 16)
    held_loss = target(xh, labels=xh).loss.item()
target_steps = steps
log(f"target: {steps} steps, train loss {loss.item():.3f}, held-out loss {held_loss:.3f}")
os.makedirs(f"{args.out}/target", exist_ok=True)
target.to(torch.bfloat16).save_pretrained(f"{args.out}/target")
target.float()

# --- draft vocabulary: the 32,000 most frequent training tokens, ascending (§1.4) --------------
VD = 32000
counts = torch.bincount(train, minlength=cfg.vocab_size)
used = torch.sort(torch.topk(counts, VD).indices).values.to(dev)
t2d = torch.zeros(cfg.vocab_size, dtype=torch.bool, device=dev)
t2d[used] = True
L = cfg.num_hidden_layers
AUX = [1, L // 2 - 1, L - 4]  # outputs of these layers (§2.1)


# --- the EAGLE-3 head and its training-time test (§2, §5) ---------------------------------------
class Head(torch.nn.Module):
    def __init__(self, H=512, nh=8, nkv=4, hd=64, inter=1536):
        super().__init__()
        self.H, self.nh, self.nkv, self.hd = H, nh, nkv, hd
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)
        self.fc = lin(3 * H, H)
        self.q, self.k, self.v, self.o = lin(2 * H, nh * hd), lin(2 * H, nkv * hd), lin(2 * H, nkv * hd), lin(nh * hd, H)
        self.gate, self.up, self.down = lin(H, inter), lin(H, inter), lin(inter, H)
        self.hidden_norm, self.input_norm, self.post_norm, self.norm = (torch.nn.Parameter(torch.ones(H)) for _ in range(4))
        self.lm_head = lin(H, VD)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def rope(self, x, pos):  # x [B, T, h, d]
        inv = 1.0 / (1e6 ** (torch.arange(0, self.hd, 2, device=x.device).float() / self.hd))
        ang = pos[:, None].float() * inv[None]
        cos, sin = torch.cat([ang.cos()] * 2, -1)[None, :, None], torch.cat([ang.sin()] * 2, -1)[None, :, None]
        return x * cos + torch.cat([-x[..., self.hd // 2:], x[..., :self.hd // 2]], -1) * sin

    def step(self, emb, h, pos, k0, v0, diag):
        """One TTT step over all indices: queries see step-0 keys causally and their own index's
        keys of earlier steps (diag). Returns h2, logits and this step's keys/values."""
        B, T, _ = h.shape
        a = torch.cat([self.rms(emb, self.input_norm), self.rms(h, self.hidden_norm)], -1)
        q = self.rope(self.q(a).view(B, T, self.nh, self.hd), pos)
        k = self.rope(self.k(a).view(B, T, self.nkv, self.hd), pos)
        v = self.v(a).view(B, T, self.nkv, self.hd)
        if k0 is None:
            k0, v0 = k, v
        else:
            diag = diag + [(k, v)]
        g = self.nh // self.nkv
        K0, V0 = k0.repeat_interleave(g, 2), v0.repeat_interleave(g, 2)
        s0 = torch.einsum("bthd,bshd->bhts", q, K0) / math.sqrt(self.hd)
        s0 = s0.masked_fill(torch.ones(T, T, device=h.device, dtype=torch.bool).triu(1), float("-inf"))
        sd = [torch.einsum("bthd,bthd->bht", q, dk.repeat_interleave(g, 2))[..., None] / math.sqrt(self.hd) for dk, _ in diag]
        p = torch.cat([s0] + sd, -1).float().softmax(-1).to(q.dtype)
        o = torch.einsum("bhts,bshd->bthd", p[..., :T], V0)
        for j, (_, dv) in enumerate(diag):
            o = o + p[..., T + j].transpose(1, 2)[..., None] * dv.repeat_interleave(g, 2)
        h1 = h + self.o(o.reshape(B, T, -1))
        y = self.rms(h1, self.post_norm)
        h2 = h1 + self.down(F.silu(self.gate(y)) * self.up(y))
        return h2, self.lm_head(self.rms(h2, self.norm)), k0, v0, diag


head = Head().to(dev)
embed = target.model.embed_tokens.weight.detach()
opt = torch.optim.AdamW(head.parameters(), lr=1e-3, betas=(0.9, 0.95))
STEPS_TTT, DB = 7, 16


def ttt_loss(x):
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        out = target(x, output_hidden_states=True)
        feats = torch.cat([out.hidden_states[l + 1] for l in AUX], -1).float()
        logits = out.logits.float()
    # Target distribution over the draft vocabulary at each position, and where it is usable.
    label = logits[..., used].softmax(-1)
    ok = t2d[logits.argmax(-1)]
    T = x.shape[1]
    pos = torch.arange(T, device=dev)
    h, k0, v0, diag = head.fc(feats), None, None, []
    total, acc = 0.0, []
    for k in range(STEPS_TTT):
        n = T - 2 - k  # index t pairs token t+k+1 and predicts t+k+2
        tokens = torch.cat([x[:, k + 1:], x[:, -1:].expand(-1, k + 1)], 1)
        with torch.autocast("cuda", torch.bfloat16):
            h, dl, k0, v0, diag = head.step(embed[tokens], h, pos + k, k0, v0, diag)
        lp = dl.float().log_softmax(-1)[:, :n]
        lab, m = label[:, k + 1:k + 1 + n], ok[:, k + 1:k + 1 + n].float()
        loss_k = -((lab * lp).sum(-1) * m).sum() / m.sum().clamp(min=1)
        total = total + 0.8 ** k * loss_k
        acc.append(((lp.argmax(-1) == lab.argmax(-1)).float() * m).sum().item() / max(1.0, m.sum().item()))
    return total, acc


steps, deadline = 0, time.time() + args.draft_seconds
while time.time() < deadline:
    for g in opt.param_groups:
        g["lr"] = 1e-3 * min(1.0, (steps + 1) / 50)
    loss, acc = ttt_loss(batch(train, DB))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps += 1
    if steps % 100 == 0:
        log(f"draft step {steps} loss {loss.item():.3f} top-1 agreement by step {[round(a, 2) for a in acc]}")
with torch.no_grad():
    _, held_acc = ttt_loss(batch(held, DB))
log(f"draft: {steps} steps; held-out top-1 agreement by step {[round(a, 3) for a in held_acc]}")

# --- save the head as SpecForge / sglang do (§1.1–1.3) ------------------------------------------
d = f"{args.out}/draft"
os.makedirs(d, exist_ok=True)
sd = {
    "fc.weight": head.fc.weight, "norm.weight": head.norm, "lm_head.weight": head.lm_head.weight,
    "midlayer.hidden_norm.weight": head.hidden_norm, "midlayer.input_layernorm.weight": head.input_norm,
    "midlayer.post_attention_layernorm.weight": head.post_norm,
    "midlayer.self_attn.q_proj.weight": head.q.weight, "midlayer.self_attn.k_proj.weight": head.k.weight,
    "midlayer.self_attn.v_proj.weight": head.v.weight, "midlayer.self_attn.o_proj.weight": head.o.weight,
    "midlayer.mlp.gate_proj.weight": head.gate.weight, "midlayer.mlp.up_proj.weight": head.up.weight,
    "midlayer.mlp.down_proj.weight": head.down.weight,
}
sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in sd.items()}
sd["d2t"] = (used - torch.arange(VD, device=dev)).to(torch.int64).cpu()
sd["t2d"] = t2d.cpu()
save_file(sd, f"{d}/model.safetensors")
json.dump({"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_size": 512,
           "intermediate_size": 1536, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64,
           "num_hidden_layers": 1, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1e6,
           "max_position_embeddings": 4096, "vocab_size": cfg.vocab_size, "draft_vocab_size": VD,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, open(f"{d}/config.json", "w"), indent=1)
json.dump({"target_steps": target_steps, "draft_steps": steps, "held_loss": held_loss, "held_top1_by_step": held_acc, "aux_layers": AUX,
           "tokens": len(ids),
           # The same provenance keys the bench results carry (lib/cli/bench.ts).
           "commit": os.environ.get("EAGLE3_COMMIT"), "device": torch.cuda.get_device_name(dev),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
          open(f"{args.out}/training.json", "w"), indent=1)
log("saved", sorted(os.listdir(d)), sorted(os.listdir(f"{args.out}/target")))
