#!/usr/bin/env python3
"""Writes reference cases for model/reference_test.go.

An independent float64 PyTorch implementation of the Hugging Face Llama /
Qwen2 forward pass (modeling_llama.py: LlamaRMSNorm, rotate_half,
apply_rotary_pos_emb, repeat_kv, eager causal attention, LlamaMLP, the
shifted causal-LM loss) with PEFT-style LoRA layers computes logits,
per-example losses and, by autograd, per-example gradients of the LoRA
matrices. Each case directory holds a Hugging Face checkpoint
(config.json, model.safetensors in F32/BF16/F16), a PEFT adapter and
expected.json. Weights are rounded to the stored dtype before the
reference computation, so the Go loader must decode them exactly.

Run with Debian's python3-torch (1.13):  python3 model/testdata/gen_reference.py
"""
import json, math, os, struct
import torch

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_safetensors(path, tensors, dtype):
    """tensors: name -> float64 tensor; returns the values as stored."""
    header, blobs, off, stored = {}, [], 0, {}
    for name in sorted(tensors):
        t = tensors[name]
        if dtype == "F32":
            s = t.to(torch.float32)
        elif dtype == "BF16":
            s = t.to(torch.bfloat16)
        elif dtype == "F16":
            s = t.to(torch.float16)
        stored[name] = s.to(torch.float64)
        if dtype == "BF16":  # numpy has no bfloat16: reinterpret as int16
            raw = s.view(torch.int16).numpy().tobytes()
        else:
            raw = s.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return stored


def inv_freq(c):
    hd = c["head_dim"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).double() / hd))
    rs = c.get("rope_scaling")
    if rs and rs["rope_type"] == "llama3":  # transformers _compute_llama3_parameters
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        inv_l = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wl < high_wl) * ~(wl > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    elif rs and rs["rope_type"] == "linear":
        inv = inv / rs["factor"]
    return inv


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def forward(c, W, lora, scale, ids):
    T, H, KV, hd = len(ids), c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]
    pos = torch.arange(T).double()
    freqs = torch.outer(pos, inv_freq(c))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def lin(x, l, m, path):
        name = f"model.layers.{l}.{path}.{m}"
        y = x @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        if (l, m) in lora:
            A, B = lora[(l, m)]
            y = y + scale * ((x @ A.T) @ B.T)
        return y

    h = W["model.embed_tokens.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(c["num_hidden_layers"]):
        x = rms(h, W[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = lin(x, l, "q_proj", "self_attn").view(T, H, hd).transpose(0, 1)
        k = lin(x, l, "k_proj", "self_attn").view(T, KV, hd).transpose(0, 1)
        v = lin(x, l, "v_proj", "self_attn").view(T, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV  # repeat_kv
        k = k[:, None].expand(KV, rep, T, hd).reshape(H, T, hd)
        v = v[:, None].expand(KV, rep, T, hd).reshape(H, T, hd)
        s = q @ k.transpose(1, 2) / math.sqrt(hd) + mask
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(0, 1).reshape(T, H * hd)
        h = h + lin(a, l, "o_proj", "self_attn")
        x = rms(h, W[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        g = lin(x, l, "gate_proj", "mlp")
        u = lin(x, l, "up_proj", "mlp")
        h = h + lin(torch.nn.functional.silu(g) * u, l, "down_proj", "mlp")
    head = W["model.embed_tokens.weight"] if c["tie_word_embeddings"] else W["lm_head.weight"]
    return rms(h, W["model.norm.weight"], eps) @ head.T


def loss_of(logits, labels):
    sl, lab = logits[:-1], torch.tensor(labels[1:])
    if (lab != -100).sum() == 0:
        return logits.sum() * 0
    return torch.nn.functional.cross_entropy(sl, lab, ignore_index=-100, reduction="mean")


def expected_tensors(c):
    D, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    shapes = {"q_proj": (q, D), "k_proj": (kv, D), "v_proj": (kv, D), "o_proj": (D, q),
              "gate_proj": (I, D), "up_proj": (I, D), "down_proj": (D, I)}
    m = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not c["tie_word_embeddings"]:
        m["lm_head.weight"] = (V, D)
    for l in range(c["num_hidden_layers"]):
        m[f"model.layers.{l}.input_layernorm.weight"] = (D,)
        m[f"model.layers.{l}.post_attention_layernorm.weight"] = (D,)
        for mod in MODULES:
            path = "self_attn" if mod in MODULES[:4] else "mlp"
            m[f"model.layers.{l}.{path}.{mod}.weight"] = shapes[mod]
        if c["_qkv_bias"]:
            for mod in MODULES[:3]:
                m[f"model.layers.{l}.self_attn.{mod}.bias"] = (shapes[mod][0],)
        if c["_o_bias"]:
            m[f"model.layers.{l}.self_attn.o_proj.bias"] = (D,)
    return m, shapes


def make_case(name, c, dtype, lcfg, seed):
    g = torch.Generator().manual_seed(seed)
    out = os.path.join(HERE, "reference", name)
    os.makedirs(os.path.join(out, "adapter"), exist_ok=True)
    shapes, proj = expected_tensors(c)
    W = {}
    for n, s in shapes.items():
        if n.endswith("norm.weight"):
            W[n] = 0.5 + torch.rand(s, generator=g)
        else:
            W[n] = torch.randn(s, generator=g) * 0.3
    W = write_safetensors(os.path.join(out, "model.safetensors"), W, dtype)
    cfg = {k: v for k, v in c.items() if not k.startswith("_")}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    r, alpha = lcfg["r"], lcfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if lcfg["use_rslora"] else alpha / r
    lora, flat = {}, []
    ad = {}
    for l in range(c["num_hidden_layers"]):
        for m in MODULES:
            if m not in lcfg["target_modules"]:
                continue
            o, i = proj[m]
            bound = 1 / math.sqrt(i)
            A = ((torch.rand((r, i), generator=g) * 2 - 1) * bound).to(torch.float32).double()
            B = (torch.randn((o, r), generator=g) * 0.2).to(torch.float32).double()
            A.requires_grad_(not lcfg["ffa"])
            B.requires_grad_(True)
            lora[(l, m)] = (A, B)
            path = "self_attn" if m in MODULES[:4] else "mlp"
            ad[f"base_model.model.model.layers.{l}.{path}.{m}.lora_A.weight"] = A.detach()
            ad[f"base_model.model.model.layers.{l}.{path}.{m}.lora_B.weight"] = B.detach()
            if not lcfg["ffa"]:
                flat.append(A)
            flat.append(B)
    write_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"), ad, "F32")
    acfg = {"peft_type": "LORA", "base_model_name_or_path": name, "task_type": "CAUSAL_LM", "r": r,
            "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": lcfg["target_modules"],
            "use_rslora": lcfg["use_rslora"], "bias": "none", "fan_in_fan_out": False,
            "init_lora_weights": True, "inference_mode": True, "use_dora": False,
            "modules_to_save": None, "revision": None}
    with open(os.path.join(out, "adapter", "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2)
    with open(os.path.join(out, "adapter", "fedtune_adapter.json"), "w") as f:
        json.dump({"ffa": lcfg["ffa"], "a_seed": 0}, f)

    V = c["vocab_size"]
    batch = []
    for n in (7, 4, 9, 3):
        ids = torch.randint(0, V, (n,), generator=g).tolist()
        labels = [t if torch.rand((), generator=g) > 0.25 else -100 for t in ids]
        batch.append({"input_ids": ids, "labels": labels})
    batch.append({"input_ids": [1, 2], "labels": [1, -100]})  # no target tokens
    losses, grads = [], []
    for ex in batch:
        for p in flat:
            p.grad = None
        loss = loss_of(forward(c, W, lora, scale, ex["input_ids"]), ex["labels"])
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in flat]).tolist())
    with torch.no_grad():
        logits = forward(c, W, lora, scale, batch[0]["input_ids"]).tolist()
        base = forward(c, W, {}, scale, batch[0]["input_ids"]).tolist()
        seq = [3, 1, 4]
        greedy = []
        for _ in range(8):
            nxt = int(forward(c, W, lora, scale, seq + greedy)[-1].argmax())
            greedy.append(nxt)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"batch": batch, "losses": losses, "grads": grads, "logits0": logits,
                   "base_logits0": base, "greedy_prompt": seq, "greedy": greedy}, f)


def llama():
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
            "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 6, "vocab_size": 32, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
            "attention_bias": True, "hidden_act": "silu", "torch_dtype": "bfloat16",
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
            "_qkv_bias": True, "_o_bias": True}


def qwen2():
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 16,
            "intermediate_size": 20, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True,
            "hidden_act": "silu", "torch_dtype": "float16", "head_dim": 4,
            "_qkv_bias": True, "_o_bias": False}


if __name__ == "__main__":
    make_case("llama-gqa-bias-llama3rope-bf16-lora", llama(), "BF16",
              {"r": 3, "lora_alpha": 6, "use_rslora": False, "ffa": False, "target_modules": MODULES}, 1)
    make_case("qwen2-mqa-tied-f16-ffa-rslora", qwen2(), "F16",
              {"r": 4, "lora_alpha": 8, "use_rslora": True, "ffa": True, "target_modules": ["q_proj", "v_proj", "down_proj"]}, 2)
    c = llama()
    c.update(attention_bias=False, _qkv_bias=False, _o_bias=False, rope_scaling=None, head_dim=4, torch_dtype="float32", rope_theta=10000.0)
    del c["rope_scaling"]
    make_case("llama-mha-f32-lora", c, "F32",
              {"r": 2, "lora_alpha": 4, "use_rslora": False, "ffa": False, "target_modules": ["q_proj", "k_proj", "o_proj", "up_proj"]}, 3)
