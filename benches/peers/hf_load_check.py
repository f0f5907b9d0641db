#!/usr/bin/env python3
"""Does Hugging Face transformers load what `llm gpt train` saved, and compute what we do?

usage: hf_load_check.py MODEL_DIR IDS_FILE [--prompt-ids "1 2 3"] [--new 20]

Loads MODEL_DIR with transformers.LlamaForCausalLM.from_pretrained, prints the mean
next-token cross-entropy over IDS_FILE with the windows `llm gpt eval --ids` uses (windows
of the model's context tiling the sequence), and the greedy continuation of the prompt,
to compare with

  llm gpt eval --model MODEL_DIR --ids IDS_FILE
  llm gpt generate --model MODEL_DIR --prompt-ids "1 2 3" --max-new-tokens 20 --greedy
"""
import argparse

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("ids")
    p.add_argument("--prompt-ids", default="1 2 3")
    p.add_argument("--new", type=int, default=20)
    a = p.parse_args()
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    ctx = model.config.max_position_embeddings
    ids = torch.tensor([int(t) for t in open(a.ids).read().split()], dtype=torch.long)
    n, total, start = len(ids) - 1, 0.0, 0
    with torch.no_grad():
        while start < n:
            length = min(ctx, n - start)
            x = ids[start:start + length][None]
            y = ids[start + 1:start + length + 1]
            total += F.cross_entropy(model(x).logits[0], y, reduction="sum").item()
            start += length
        h = total / n
        print(f"transformers: cross-entropy {h:.4f} nats/token over {n} predictions (perplexity {torch.tensor(h).exp():.3f})")
        prompt = torch.tensor([[int(t) for t in a.prompt_ids.split()]])
        out = model.generate(prompt, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False,
                             pad_token_id=None, eos_token_id=None, bos_token_id=None)
        print("transformers greedy:", " ".join(str(t) for t in out[0, prompt.shape[1]:].tolist()))


if __name__ == "__main__":
    main()
