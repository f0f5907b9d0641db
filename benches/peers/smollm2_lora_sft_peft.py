"""usage: smollm2_lora_sft_peft.py --positions T [--batch 4] [--steps 10] [--threads 2]

The peer of `llm post lora-sft` (chapter 8): one SFT step through PEFT LoRA adapters
(rank 8, alpha 16, q_proj and v_proj, dropout 0; AdamW, weight decay 0) on a transformers
LlamaForCausalLM of SmolLM2-135M-Instruct's shape (vocab 49152, hidden 576, 30 layers,
9 heads, 3 key/value heads, intermediate 1536, tied embeddings, float32), on BATCH x T ids
with the loss on every position. The weights are random: the step's work does not depend on
their values. Prints the median seconds per step over STEPS steps after 2 warm-up, and the
peak RSS. `llm post lora-sft` prints its own seconds per step for rows of T positions.
"""

import argparse
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(usage=__doc__.splitlines()[0][len("usage: "):])
    ap.add_argument("--positions", type=int, required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=8192,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      attn_implementation="eager")
    model = get_peft_model(LlamaForCausalLM(cfg),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.positions + 1))
    x, y = ids[:, :-1], ids[:, 1:]
    times = []
    for step in range(a.steps + 2):
        t0 = time.perf_counter()
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step >= 2:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peft lora r=8 q_proj,v_proj, {a.batch} x {a.positions}, {a.threads} threads: "
          f"median {statistics.median(times):.3f} s/step (min {min(times):.3f}, max {max(times):.3f}), "
          f"trainable {sum(p.numel() for p in params)}, torch {torch.__version__}, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
