#!/usr/bin/env python3
"""usage: ggml_quant_ref.py OUT_DIR

ggml's Q8_0, Q4_0 and Q4_1 blocks of a small float32 matrix, from the gguf package's numpy
quantizers (gguf.quants, which its authors keep bit-exact with ggml-quants.c's
quantize_row_*_ref). The matrix is 12 x 256 (8 blocks of 32 per row), seeded, with edge-case
rows:

  0  N(0, 1)
  1  all zeros                       (d = 0 in every format: every q is 0, or 8 for Q4_0)
  2  exact .5 ties for Q8_0          (max 127 in each block, so d = 1 and x/d = k + 0.5)
  3  largest |x| negative            (Q4_0 keeps the sign: d = max / -8 > 0)
  4  largest |x| positive            (Q4_0: d < 0)
  5  N(0, 1) * 1000                  (d ~ 25 for Q8_0: f16 rounds it)
  6  N(0, 1) * 1e-4                  (d ~ 2e-6 for Q8_0, 3e-5 for Q4_0: subnormal f16 scales)
  7  constant per block              (Q4_1: max = min, d = 0, only m carries the value)
  8  exact .5 ties for Q4_1          (min 0, max 15 in each block, so d = 1, (x - m)/d = k + 0.5)
  9  N(0, 1) + 3                     (Q4_1's minimum matters)
 10  exact ties of |x| with both signs (+4 first, then -4: the first one decides Q4_0's sign)
 11  N(0, 1) * 1e-6                  (Q8_0's d ~ 2e-8 is below f16's smallest subnormal, 6e-8:
                                     it rounds to 0 or 6e-8, and the block loses its values)

Writes to OUT_DIR (all little-endian, row-major; the Rust test reads them with no crate):
  input.f32.bin        the matrix, float32
  q8_0.bin, q4_0.bin, q4_1.bin             the blocks, rows * 8 blocks of 34, 18, 20 bytes
  q8_0.deq.f32.bin, q4_0.deq.f32.bin, q4_1.deq.f32.bin   the package's dequantized values
  manifest.json        shape, gguf and numpy versions, sizes, sha256 of each file

The output is the same on every run (a fixed seed, no timestamps).
"""
import argparse, hashlib, json, os
from importlib.metadata import version

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize

ROWS, COLS = 12, 256
FORMATS = {"q8_0": (QT.Q8_0, 34), "q4_0": (QT.Q4_0, 18), "q4_1": (QT.Q4_1, 20)}


def matrix(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    j = np.arange(COLS)
    x[1] = 0.0
    x[2] = (j % 64 - 31.5).astype(np.float32)
    x[2, ::32] = 127.0
    x[3] = rng.uniform(-1, 1, COLS).astype(np.float32)
    x[3, 5::32] = -3.0
    x[4] = rng.uniform(-1, 1, COLS).astype(np.float32)
    x[4, 7::32] = 3.0
    x[5] *= 1000.0
    x[6] *= 1e-4
    x[7] = np.repeat(rng.uniform(-2, 2, COLS // 32), 32).astype(np.float32)
    x[8] = (j % 15 + 0.5).astype(np.float32)
    x[8, ::32], x[8, 1::32] = 0.0, 15.0
    x[9] += 3.0
    x[10] = rng.uniform(-1, 1, COLS).astype(np.float32)
    x[10, 3::32], x[10, 9::32] = 4.0, -4.0
    x[11] *= 1e-6
    return x.astype(np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    x = matrix()
    files = {"input.f32.bin": x.astype("<f4").tobytes()}
    for name, (qt, nbytes) in FORMATS.items():
        blocks = quantize(x, qt)
        assert blocks.shape == (ROWS, COLS // 32 * nbytes), blocks.shape
        deq = dequantize(blocks, qt).astype(np.float32)
        files[f"{name}.bin"] = blocks.astype(np.uint8).tobytes()
        files[f"{name}.deq.f32.bin"] = deq.astype("<f4").tobytes()
    for fname, data in files.items():
        with open(os.path.join(a.out_dir, fname), "wb") as f:
            f.write(data)
    manifest = {
        "generator": "benches/peers/ggml_quant_ref.py",
        "gguf": version("gguf"),
        "numpy": np.__version__,
        "rows": ROWS,
        "cols": COLS,
        "block_values": 32,
        "block_bytes": {k: v[1] for k, v in FORMATS.items()},
        "files": {k: {"bytes": len(v), "sha256": hashlib.sha256(v).hexdigest()} for k, v in files.items()},
    }
    with open(os.path.join(a.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
