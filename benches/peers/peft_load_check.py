"""usage: peft_load_check.py BASE_DIR ADAPTER_DIR IDS_FILE [--logits N]

Does Hugging Face PEFT load what `llm lora train` saved, and compute what we do?

Loads BASE_DIR with transformers.LlamaForCausalLM.from_pretrained and ADAPTER_DIR with
peft.PeftModel.from_pretrained, and prints the mean next-token cross-entropy over the ids
of IDS_FILE (whitespace-separated) with the windows `llm lora eval --ids` uses (windows of
the model's context tiling the sequence), then the first N logits at the first and last
positions of the first window, to compare with

  llm lora eval --model BASE_DIR --adapter ADAPTER_DIR --ids IDS_FILE

Also prints the base model's cross-entropy, so that one sees the adapter changed it.
"""
import argparse

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import LlamaForCausalLM


def cross_entropy(model, ids, ctx):
    n, total, start = len(ids) - 1, 0.0, 0
    with torch.no_grad():
        while start < n:
            length = min(ctx, n - start)
            x = ids[start:start + length][None]
            y = ids[start + 1:start + length + 1]
            total += F.cross_entropy(model(x).logits[0], y, reduction="sum").item()
            start += length
    return total / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("adapter")
    p.add_argument("ids")
    p.add_argument("--logits", type=int, default=6)
    a = p.parse_args()
    torch.manual_seed(0)
    base = LlamaForCausalLM.from_pretrained(a.base, torch_dtype=torch.float32).eval()
    ctx = base.config.max_position_embeddings
    ids = torch.tensor([int(t) for t in open(a.ids).read().split()], dtype=torch.long)
    n = len(ids) - 1
    h_base = cross_entropy(base, ids, ctx)
    model = PeftModel.from_pretrained(base, a.adapter).eval()
    cfg = model.peft_config["default"]
    print(
        f"peft: r = {cfg.r}, alpha {cfg.lora_alpha}, rslora {cfg.use_rslora}, "
        f"targets {sorted(cfg.target_modules)}"
    )
    h = cross_entropy(model, ids, ctx)
    print(f"base model: cross-entropy {h_base:.6f} nats/token over {n} predictions")
    print(
        f"peft: cross-entropy {h:.6f} nats/token over {n} predictions "
        f"(perplexity {torch.tensor(h).exp():.3f})"
    )
    with torch.no_grad():
        logits = model(ids[: min(ctx, n)][None]).logits[0]
    for pos in (0, logits.shape[0] - 1):
        row = " ".join(f"{v:.6f}" for v in logits[pos, : a.logits].tolist())
        print(f"logits[{pos}][:{a.logits}] {row}")


if __name__ == "__main__":
    main()
