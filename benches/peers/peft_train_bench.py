"""usage: peft_train_bench.py [full|lora] [--steps N] [--rank R] [--alpha A] [--targets q_proj,v_proj] [--threads T]

One training step (forward, backward, AdamW) of llama-tiny as a transformers
LlamaForCausalLM (vocab 1024, hidden 128, 4 layers, 4 heads, 2 key/value heads,
intermediate 344, RoPE theta 10000, untied head, random init) on 16 x 128 random ids,
with every tensor trainable (`full`) or with PEFT LoRA adapters (`lora`, dropout 0).
Prints the median tokens/s over N steps after 2 warm-up, the peak RSS and the trainable
parameter count: the peer of `cargo bench --bench lora`. Set OPENBLAS_NUM_THREADS=1.
"""

import argparse
import resource
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(usage=__doc__.splitlines()[0][len("usage: "):])
    ap.add_argument("mode", nargs="?", default="lora", choices=["full", "lora"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=None, help="default 2 * rank")
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1024,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=344,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg)
    what = "full"
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        alpha = args.alpha if args.alpha is not None else 2 * args.rank
        lora = LoraConfig(
            r=args.rank,
            lora_alpha=alpha,
            target_modules=args.targets.split(","),
            lora_dropout=0.0,
        )
        model = get_peft_model(model, lora)
        what = f"lora r={args.rank} alpha={alpha:g} {args.targets}"
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    b, t = 16, 128
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (b, t + 1), generator=g)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    times = []
    for step in range(args.steps + 2):
        t0 = time.perf_counter()
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step >= 2:
            times.append(dt)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peft llama-tiny {what}, batch {b}x{t}, {torch.get_num_threads()} threads, median of {args.steps}: "
        f"{b * t / med:.0f} tokens/s (step {med * 1e3:.1f} ms), peak RSS {rss:.1f} MiB, "
        f"trainable {trainable} of {total} values"
    )


if __name__ == "__main__":
    main()
