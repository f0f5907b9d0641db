#!/usr/bin/env python3
"""The crate's training run, repeated in PyTorch: same token ids, config, initial weights,
learning rate at every step, AdamW settings and clipping; its own random windows.

usage: torch_same_run.py --init DIR --ids FILE --log OURS_train_log.csv --out torch_log.csv
           [--batch 16] [--held-out 0.1] [--eval-every 100] [--eval-windows 64] [--threads 2]

  --init DIR   `llm gpt train --save-init` wrote DIR/init: config.json + model.safetensors
  --ids FILE   the token ids of the corpus (`llm bpe encode --ranks ... < corpus`)
  --log FILE   our train_log.csv: the number of steps and the learning rate of each step
  --out FILE   written in the same CSV format, so `llm gpt plot` draws both runs

The model is gpt_torch.py's compact PyTorch Llama (next to this script; its parameter
names equal transformers' LlamaForCausalLM's).

The held-out split and windows are the crate's
(`split_held_out`, `eval_loss`): the last 10% of the ids, windows tiling it from its start.
AdamW: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices only, clip 1.0.
"""
import argparse, csv, json, math, os, sys, time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--held-out", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", default=os.path.dirname(os.path.abspath(__file__)),
                   help="the folder that holds gpt_torch.py (default: this script's own)")
    a = p.parse_args()
    sys.path.insert(0, a.peers)
    try:
        import gpt_torch
    except ImportError as e:
        sys.exit(f"cannot import gpt_torch from {a.peers} ({e})")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.load(open(f"{a.init}/config.json"))
    assert cfg.get("architectures") == ["LlamaForCausalLM"], "a Llama config.json"
    args = argparse.Namespace(
        arch="llama", vocab=cfg["vocab_size"], d_model=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"], n_heads=cfg["num_attention_heads"],
        n_kv_heads=cfg["num_key_value_heads"], d_ff=cfg["intermediate_size"],
        seq_len=cfg["max_position_embeddings"], eps=cfg["rms_norm_eps"],
        rope_theta=cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"], sdpa=False)
    model = gpt_torch.Decoder(args, args.seq_len)
    state = load_file(f"{a.init}/model.safetensors")
    model.load_state_dict(state, strict=True)

    ids = torch.tensor([int(t) for t in open(a.ids).read().split()], dtype=torch.long)
    n_val = math.floor(len(ids) * a.held_out + 0.5)  # Rust's f64::round
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    T = args.seq_len
    with open(a.log) as f:
        ours = list(csv.DictReader(f))
    lrs = [float(r["lr"]) for r in ours]

    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lrs[0], betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(a.seed)

    @torch.no_grad()
    def held_out():
        n_win = max(1, min((len(val) - 1) // T, a.eval_windows))
        total = 0.0
        for s in range(0, n_win, a.batch):
            starts = [w * T for w in range(s, min(n_win, s + a.batch))]
            x = torch.stack([val[i:i + T] for i in starts])
            y = torch.stack([val[i + 1:i + T + 1] for i in starts])
            total += F.cross_entropy(model(x).reshape(-1, args.vocab), y.reshape(-1)).item() * len(starts)
        return total / n_win

    rows, t0 = [], time.perf_counter()
    for step, lr in enumerate(lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train) - T, (a.batch,), generator=g).tolist()
        x = torch.stack([train[s:s + T] for s in starts])
        y = torch.stack([train[s + 1:s + T + 1] for s in starts])
        loss = F.cross_entropy(model(x).reshape(-1, args.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        h = ""
        if a.eval_every and (step + 1) % a.eval_every == 0:
            model.eval()
            h = repr(held_out())
            model.train()
            print(f"step {step + 1}: train loss {loss.item():.4f}, held-out loss {float(h):.4f}", flush=True)
        rows.append([step, repr(loss.item()), repr(lr), repr(norm.item()), h])
    seconds = time.perf_counter() - t0
    with open(a.out, "w", newline="") as f:
        f.write("step,train_loss,lr,grad_norm,held_out_loss\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")
    print(f"torch {torch.__version__}: {len(lrs)} steps in {seconds:.1f} s (evaluations included); "
          f"final held-out loss {held_out():.4f}; wrote {a.out}")


if __name__ == "__main__":
    main()
