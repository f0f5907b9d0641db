"""usage: python benches/peers/peft_lora_ref.py [--model tests/fixtures/llama-tiny] [--out tests/fixtures/lora] [--cases qv,rslora_all,init]

Hugging Face PEFT LoRA references for the tiny Llama in MODEL (its model.safetensors,
config.json, and expected.json or reference.json for the token ids). Run it from the
repository root so that adapter_config.json records the relative MODEL path. One folder per
case under OUT, each holding what PEFT's save_pretrained writes (adapter_config.json,
adapter_model.safetensors; its README.md model card is removed) and:

  reference.json       versions, LoraConfig fields, the scaling PEFT uses (read off the
                       q_proj module), token ids, mean cross-entropy of the adapted and the
                       base model, the merge_and_unload() check, the save/load round trip;
  logits.safetensors   `logits` (adapted) and `base_logits`, each [T, V] float32;
  adapter_grads.safetensors (case qv only): d(mean CE)/d(every lora_A, lora_B), under the
                       names adapter_model.safetensors uses, float32.

Cases:
  qv          r=4, alpha=8, q_proj+v_proj (PEFT's Llama default), every lora_A/lora_B set to
              N(0, 0.1) from torch.manual_seed(1), parameters in sorted name order;
  rslora_all  r=8, alpha=16, use_rslora (scaling alpha/sqrt(r)), all seven Llama linears,
              same seeded init;
  init        r=4, alpha=8, q_proj+v_proj, PEFT's own init (lora_A Kaiming-uniform with
              a=sqrt(5), so U(-1/sqrt(in), 1/sqrt(in)); lora_B zeros), torch.manual_seed(0)
              before get_peft_model.

Token ids: reference.json's `token_ids` if MODEL has one, else expected.json's first row of
`inputs` followed by the last id of the first row of `targets` (17 ids), so that the mean CE
with labels = ids (HF shifts by one inside) is the CE of inputs[0] -> targets[0].
`logits`, the CE values and the gradients are computed in float64 from the float32 weights
(a float64 copy of the PEFT model; transformers' RMSNorm and RoPE tables, which compute in
float32 whatever the input, are patched to stay in float64) and stored as float32; the
float32 PEFT forward is measured against them (`*_f32_vs_f64_*`). Math: W' = W + scaling * B @ A, A [r, in],
B [out, r], scaling = alpha / r (alpha / sqrt(r) with use_rslora).
"""
import argparse
import copy
import hashlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import peft
import transformers
import safetensors
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import LlamaForCausalLM
from transformers.models.llama import modeling_llama

ALL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = {
    "qv": dict(r=4, lora_alpha=8, use_rslora=False, target_modules=["q_proj", "v_proj"], init="normal", grads=True),
    "rslora_all": dict(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL_LINEARS, init="normal", grads=False),
    "init": dict(r=4, lora_alpha=8, use_rslora=False, target_modules=["q_proj", "v_proj"], init="peft", grads=False),
}
SEED_NORMAL, STD, SEED_PEFT = 1, 0.1, 0


def token_ids(model_dir):
    ref = os.path.join(model_dir, "reference.json")
    if os.path.exists(ref):
        return json.load(open(ref))["token_ids"], "reference.json token_ids"
    exp = json.load(open(os.path.join(model_dir, "expected.json")))
    return exp["inputs"][0] + [exp["targets"][0][-1]], "expected.json inputs[0] + [targets[0][-1]]"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def saved_name(name):
    # PEFT's get_peft_model_state_dict drops the adapter name: `.lora_A.default.weight` -> `.lora_A.weight`
    return name.replace(".default", "")


def lora_params(model):
    return sorted((n, p) for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n)


def float64_all_the_way(rope_theta):
    """transformers 4.44's Llama rounds a float64 forward to float32 in two places: LlamaRMSNorm
    computes in float32 and casts back, and LlamaRotaryEmbedding makes cos/sin in float32. Patch both
    to stay in float64 when the input is float64; float32 inputs take transformers' own code."""
    norm32, rope32 = modeling_llama.LlamaRMSNorm.forward, modeling_llama.LlamaRotaryEmbedding.forward

    def norm(self, h):
        if h.dtype != torch.float64:
            return norm32(self, h)
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rope(self, x, position_ids):
        if x.dtype != torch.float64:
            return rope32(self, x, position_ids)
        assert self.rope_type == "default" and self.attention_scaling == 1.0
        dim = 2 * self.inv_freq.shape[0]
        inv_freq = 1.0 / rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        freqs = position_ids[:, :, None].double() * inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    modeling_llama.LlamaRMSNorm.forward = norm
    modeling_llama.LlamaRotaryEmbedding.forward = rope


def logits_f64(m, ids):
    # LlamaForCausalLM casts its logits to float32 (`logits = logits.float()`, transformers 4.44), and
    # computes the loss from those: in float64 take the last hidden state (after the final norm) through
    # lm_head ourselves, and the CE from that.
    h = m(ids, output_hidden_states=True).hidden_states[-1]
    logits = m.get_output_embeddings()(h)[0]
    assert logits.dtype == torch.float64
    return logits, F.cross_entropy(logits[:-1], ids[0, 1:])


def run_case(name, spec, model_dir, out_root, ids_list, ids_from):
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    ids = torch.tensor([ids_list])

    base = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    base64 = copy.deepcopy(base).double()
    with torch.no_grad():
        base_out = base(ids, labels=ids)
        base_logits64, base_ce64 = logits_f64(base64, ids)

    cfg = LoraConfig(r=spec["r"], lora_alpha=spec["lora_alpha"], use_rslora=spec["use_rslora"],
                     target_modules=spec["target_modules"], lora_dropout=0.0, bias="none")
    torch.manual_seed(SEED_PEFT)
    model = get_peft_model(base, cfg).eval()
    if spec["init"] == "normal":
        torch.manual_seed(SEED_NORMAL)
        with torch.no_grad():
            for _, prm in lora_params(model):
                prm.normal_(0.0, STD)
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    scaling = q.scaling["default"]

    # float32 PEFT forward, and the float64 copy (reference values + gradients)
    with torch.no_grad():
        out32 = model(ids, labels=ids)
    model64 = copy.deepcopy(model).double()
    for _, prm in lora_params(model64):
        prm.requires_grad_(True)
    logits64, ce64 = logits_f64(model64, ids)
    ce64.backward()
    logits64 = logits64.detach()
    # the float32 CE that HF computes with labels = ids (it shifts inside) against the float32 logits by hand,
    # to pin the convention down
    ce_by_hand_f32 = F.cross_entropy(out32.logits[0, :-1], ids[0, 1:]).item()

    # PEFT's initialisation, read before merge_and_unload() strips the LoRA layers
    init_res = {}
    if spec["init"] == "peft":
        init = {}
        for n, p in lora_params(model):
            p = p.detach()
            e = {"shape": list(p.shape), "max_abs": p.abs().max().item(), "mean": p.mean().item(), "std": p.std().item()}
            if "lora_A" in n:
                bound = 1.0 / math.sqrt(p.shape[1])
                e.update(in_features=p.shape[1], kaiming_bound=bound, uniform_std=bound / math.sqrt(3),
                         max_abs_over_bound=e["max_abs"] / bound)
            init[saved_name(n)] = e
        assert len(init) == 2 * len(spec["target_modules"]) * model.config.num_hidden_layers, sorted(init)
        init_res["init_stats"] = init
        init_res["all_lora_B_zero"] = all(p.abs().max().item() == 0.0 for n, p in lora_params(model) if "lora_B" in n)
        init_res["kaiming_note"] = ("kaiming_uniform_(a=sqrt(5)) on A [r, in]: fan_in = in, gain = sqrt(2 / (1 + 5)), "
                                    "bound = sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(in)")
    model.save_pretrained(out)
    card = os.path.join(out, "README.md")
    if os.path.exists(card):
        os.remove(card)

    # round trip: load the saved adapter onto a fresh base
    fresh = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    loaded = PeftModel.from_pretrained(fresh, out).eval()
    with torch.no_grad():
        loaded_logits = loaded(ids).logits
    with torch.no_grad():
        merged = model.merge_and_unload()
        merged_out = merged(ids, labels=ids)

    save_file({"logits": logits64.float().contiguous(), "base_logits": base_logits64.float().contiguous()},
              os.path.join(out, "logits.safetensors"))

    with safe_open(os.path.join(out, "adapter_model.safetensors"), framework="pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    in_memory = {saved_name(n): p.detach() for n, p in lora_params(model64)}
    assert sorted(saved) == sorted(in_memory), (sorted(saved), sorted(in_memory))
    assert all(torch.equal(saved[k], in_memory[k].float()) for k in saved)
    # the crate's route, without PEFT: W' = W + scaling * B @ A from the saved file, in float64
    hand = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval().double()
    hand_sd = hand.state_dict()
    with torch.no_grad():
        for k in saved:
            if ".lora_A.weight" in k:
                w = k.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
                A, B = saved[k].double(), saved[k.replace("lora_A", "lora_B")].double()
                hand_sd[w].add_(scaling * (B @ A))
        hand_logits = logits_f64(hand, ids)[0]
    tensors = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in sorted(saved.items())}

    res = {
        "case": name,
        "made_with": {"peft": peft.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                      "safetensors": safetensors.__version__, "python": sys.version.split()[0]},
        "command": "python benches/peers/peft_lora_ref.py --model " + model_dir + " --out " + out_root + " --cases " + name,
        "base_model": {"dir": model_dir, "model_safetensors_sha256": sha256(os.path.join(model_dir, "model.safetensors"))},
        "r": spec["r"], "lora_alpha": spec["lora_alpha"], "use_rslora": spec["use_rslora"],
        "target_modules": spec["target_modules"], "lora_dropout": 0.0, "bias": "none",
        "scaling": scaling,
        "scaling_formula": "lora_alpha / sqrt(r)" if spec["use_rslora"] else "lora_alpha / r",
        "init": (f"every lora_A and lora_B ~ N(0, {STD}) by Tensor.normal_, torch.manual_seed({SEED_NORMAL}) after "
                 f"get_peft_model, parameters in sorted order of their in-memory names (with '.default.')")
                if spec["init"] == "normal" else
                (f"PEFT's own: torch.manual_seed({SEED_PEFT}) then get_peft_model; lora_A kaiming_uniform_(a=sqrt(5)) "
                 f"= U(-1/sqrt(in_features), 1/sqrt(in_features)), lora_B zeros"),
        "token_ids": ids_list, "token_ids_from": os.path.join(model_dir, ids_from.split()[0]) + " (" + ids_from + ")",
        "loss": "mean cross-entropy in nats, labels = token_ids, HF's shift: logits[t] predicts token_ids[t+1], "
                "t = 0..T-2; logits.safetensors holds all T positions",
        "mean_ce": ce64.item(),
        "base_mean_ce": base_ce64.item(),
        "mean_ce_f32_peft": out32.loss.item(),
        "base_mean_ce_f32": base_out.loss.item(),
        "mean_ce_f32_by_hand_minus_hf": ce_by_hand_f32 - out32.loss.item(),
        "logits_shape": list(logits64.shape),
        "logits_file": "logits.safetensors: logits (adapted), base_logits; float64 computation stored as float32",
        "max_abs_logit": logits64.abs().max().item(),
        "max_abs_diff_adapted_vs_base": (logits64 - base_logits64).abs().max().item(),
        "max_abs_diff_logits_f32_vs_f64": (out32.logits[0].double() - logits64).abs().max().item(),
        "max_abs_diff_merged_vs_adapted": (merged_out.logits - out32.logits).abs().max().item(),
        "max_abs_diff_merged_vs_adapted_f64_ref": (merged_out.logits[0].double() - logits64).abs().max().item(),
        "max_abs_diff_hand_merge_f64_vs_adapted_f64": (hand_logits - logits64).abs().max().item(),
        "max_abs_diff_reloaded_vs_adapted": (loaded_logits - out32.logits).abs().max().item(),
        "adapter_tensors": tensors,
        "n_adapter_params": sum(v.numel() for v in saved.values()),
        **init_res,
    }
    if spec["grads"]:
        grads = {saved_name(n): p.grad.float().contiguous() for n, p in lora_params(model64)}
        save_file(grads, os.path.join(out, "adapter_grads.safetensors"))
        res["grads_file"] = ("adapter_grads.safetensors: d mean_ce / d tensor for every lora_A and lora_B, "
                             "names as in adapter_model.safetensors; float64 autograd stored as float32")
        res["grad_max_abs"] = {k: v.abs().max().item() for k, v in sorted(grads.items())}
        # the float32 PEFT model's autograd against the float64 one
        m32 = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval(), cfg).eval()
        with torch.no_grad():
            for (n32, p32), (n64, p64) in zip(lora_params(m32), lora_params(model64)):
                assert n32 == n64
                p32.copy_(p64.float())
        m32(ids, labels=ids).loss.backward()
        res["max_rel_diff_grads_f32_vs_f64"] = max(
            ((p32.grad.double() - p64.grad).abs().max() / p64.grad.abs().max()).item()
            for (_, p32), (_, p64) in zip(lora_params(m32), lora_params(model64)))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    brief = {k: res[k] for k in ("case", "scaling", "mean_ce", "base_mean_ce", "max_abs_diff_adapted_vs_base",
                                 "max_abs_diff_logits_f32_vs_f64", "max_abs_diff_merged_vs_adapted",
                                 "max_abs_diff_hand_merge_f64_vs_adapted_f64", "max_abs_diff_reloaded_vs_adapted", "n_adapter_params")}
    print(json.dumps(brief))


def main():
    # PEFT keeps target_modules as a Python set and writes it to adapter_config.json in set order,
    # which follows string hashing: fix the hash seed so that a rerun writes the same bytes.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tests/fixtures/llama-tiny")
    p.add_argument("--out", default="tests/fixtures/lora")
    p.add_argument("--cases", default=",".join(CASES))
    a = p.parse_args()
    torch.set_num_threads(1)
    float64_all_the_way(json.load(open(os.path.join(a.model, "config.json")))["rope_theta"])
    ids, ids_from = token_ids(a.model)
    for name in a.cases.split(","):
        run_case(name, CASES[name], a.model, a.out, ids, ids_from)


if __name__ == "__main__":
    main()
