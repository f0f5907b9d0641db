#!/usr/bin/env python3
"""usage: smollm2_tokenizer_ref.py GGUF MOBY_DICK.txt OUT.json [--moby-chars 4096] [--random 200] [--no-llamacpp]
example (from the repository root):
    ~/.cache/llm-lessons-peers-pypi/bin/python benches/peers/smollm2_tokenizer_ref.py \\
        data/external/SmolLM2-135M-Instruct.Q4_1.gguf data/external/moby_dick.txt \\
        tests/fixtures/smollm2/tokenizer_ids.json

SmolLM2-135M-Instruct's token ids, from the tokenizer stored in its GGUF file, for probe texts (accents,
CJK, emoji with joiners and flags, digit runs, code, whitespace runs, contractions, the chat special
tokens, bytes the vocabulary lacks, the first characters of Moby-Dick, and seeded random strings; and
the whole book, as a count and a hash of its ids),
as two peers give them:

- Hugging Face tokenizers, built from the GGUF exactly as tests/fixtures/smollm2/make_smollm2_ref.py builds
  it: BPE(vocab, merges from tokenizer.ggml.tokens / .merges), pre-tokenizer
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)], ByteLevel decoder, the
  CONTROL / USER_DEFINED tokens as special tokens (matched in the text); no BOS.
- llama.cpp (node-llama-cpp 3.21.1's prebuilt build), through benches/peers/llamacpp_tokenize.mjs
  --json --special: special tokens matched in the text, no BOS. Needs node on PATH and the package
  installed (see README.md here); --no-llamacpp leaves it out.

Needs tokenizers and gguf (benches/peers/requirements-gguf.txt: gguf 0.19.0, numpy), as in
~/.cache/llm-lessons-peers-pypi. The output is the same from run to run.
"""
import argparse, hashlib, json, os, random, subprocess, sys, tempfile
from importlib.metadata import version

import tokenizers
from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))

PYTHON_CODE = '''def mean(xs):
    """The average."""
    if not xs:
        return 0.0
\ttotal = 0  # a tab, not spaces
    for x in xs:
        total += x
    return total / len(xs)


print(mean([1, 2, 3.5]))
'''

RUST_CODE = '''fn main() {
    let v: Vec<u32> = (1..=10).collect();
    let sum: u32 = v.iter().map(|x| x * x).sum();
\tprintln!("{sum} {:?}", &v[..3]);
    if sum > 100 { return; }
}
'''

# (name, text)
PROBES = [
    ("accents", "café naïve Zürich"),
    ("accents_sentence", "Le cœur a ses raisons. Ça va? Über naïve façade, crème brûlée à São Paulo."),
    ("combining_marks", "cafe\u0301 nai\u0308ve"),
    ("cjk_chinese", "中文"),
    ("cjk_japanese", "日本語のテキスト"),
    ("cjk_korean", "한국어"),
    ("cjk_mixed", "Hello 世界! 日本語のテキストと漢字、ひらがな、カタカナ。한국어 문장입니다."),
    ("cyrillic_arabic_devanagari", "Привет, мир! مرحبا بالعالم. नमस्ते दुनिया"),
    ("emoji", "😀 👍🏽 ❤️ 🦀"),
    ("emoji_zwj", "👩‍👩‍👧 👨‍💻 🏳️‍🌈"),
    ("emoji_flags", "🇫🇷🇯🇵🇺🇸"),
    ("emoji_in_text", "I ❤️ Rust 🦀!!"),
    ("digits_year", "2024"),
    ("digits_pi", "3.14159"),
    ("digits_million", "1,000,000"),
    ("digits_spaces_before", "a  2"),
    ("digits_mixed", "x1y22z333"),
    ("digits_assignment", "x =   10"),
    ("digits_tabs", "\t\t42"),
    ("digits_run", "total:    1234567"),
    ("digits_spaced", "  3 4  5"),
    ("digits_sentence", "year 2026!"),
    ("digits_version", "v1.2.3"),
    ("digits_fullwidth", "１２３"),
    ("digits_superscript", "x² + y² = z²"),
    ("digits_arabic_indic", "٣٤٥ and ½ and Ⅻ"),
    ("digits_money", "Prices $5.99, €12, £3; 2026-11-28 15:40:00Z; +1 (555) 010-9999."),
    ("code_python", PYTHON_CODE),
    ("code_rust", RUST_CODE),
    ("spaces_run", "a    b     c"),
    ("spaces_trailing", "trailing spaces   "),
    ("spaces_leading", "   leading"),
    ("spaces_only", "     "),
    ("newlines", "\n\n\n"),
    ("newlines_in_text", "one\n\n\ntwo\n"),
    ("crlf", "line one\r\nline two\r\n"),
    ("tabs", "\tindented\t\ttabs\t"),
    ("unicode_spaces", "nbsp\u00a0here, em\u2003space, ideographic\u3000space, zero\u200bwidth, nel\u0085, ls\u2028."),
    ("empty", ""),
    ("contractions", "it's I'm we'll they've you're he'd don't"),
    ("contractions_upper", "IT'S JOHN'S DON'T 'S 'Ll"),
    ("contractions_other", "O'Neil's rock 'n' roll, it’s curly"),
    ("chat_turn", "<|im_start|>user\nhi<|im_end|>"),
    ("chat_prompt", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("specials_adjacent", "<|im_end|><|im_end|><|endoftext|>"),
    ("specials_code", "<repo_name>llm<file_sep>main.rs<filename>x"),
    ("specials_partial", "<|im_start <|im_end| im_start|>"),
    # bytes without a token in the vocabulary (0x04, and 0xF1, the lead byte of U+40000)
    ("missing_byte_between_letters", "a\u0004b"),
    ("missing_byte_in_symbols", "f(\u0004)"),
    ("missing_byte_plane_4", "\U00040000x"),
]

# for the random strings: every kind of whitespace, digits, letters in many scripts, marks, emoji
ALPHABET = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2003", "\u3000", "\u200b", "\u0085", "\u2028",
            "\u1680", "\u2009", "\u202f", "\u000b", "\u000c", "a", "b", "e", "t", "h", "Z", "'", "'s", "'LL", "'ve",
            "0", "1", "2", "3", "٣", "½", "²", "Ⅻ", "１", ".", ",", "!", "?", "-", "_", "(", ")", "{", "}", "$",
            "\u0301", "e\u0301", "é", "ß", "İ", "ﬁ", "日本", "語", "한국", "Ж", "щ", "ا", "ل", "ह", "ि", "😀", "👍🏽",
            "👩‍👩‍👧", "🇫🇷", "\ufe0f", "\u007f", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "\ufeff", "fn", "x",
            "=", ";"]


def field(r, k):
    return r.fields[k].contents()


def build_tokenizer(r):
    """as tests/fixtures/smollm2/make_smollm2_ref.py builds it"""
    toks = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in field(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    types = field(r, "tokenizer.ggml.token_type")
    tok.add_special_tokens([t for t, ty in zip(toks, types) if ty in (3, 4)])  # CONTROL / USER_DEFINED
    return tok


def fnv1a64(ids):
    """FNV-1a 64 of the ids in decimal joined by single spaces (as tests/fixtures/bpe/make_expected.py)"""
    h = 0xcbf29ce484222325
    for b in " ".join(map(str, ids)).encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def llamacpp_ids(gguf, texts):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "texts.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        out = subprocess.run(["node", os.path.join(HERE, "llamacpp_tokenize.mjs"), gguf, "--json", path, "--special"],
                             check=True, capture_output=True, text=True).stdout
    res = json.loads(out)
    assert len(res["ids"]) == len(texts)
    return res["ids"], res["versions"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf")
    p.add_argument("moby_dick")
    p.add_argument("out")
    p.add_argument("--moby-chars", type=int, default=4096)
    p.add_argument("--random", type=int, default=200)
    p.add_argument("--no-llamacpp", action="store_true")
    a = p.parse_args()

    with open(a.gguf, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    r = GGUFReader(a.gguf)
    tok = build_tokenizer(r)
    with open(a.moby_dick, encoding="utf-8", newline="") as f:
        moby = f.read()
    cases = [{"name": n, "text": t} for n, t in PROBES]
    cases.append({"name": "moby_dick_start", "text": moby[:a.moby_chars]})
    rng = random.Random(0)
    for i in range(a.random):
        n = rng.randint(0, 24)
        cases.append({"name": f"random_{i}", "text": "".join(rng.choice(ALPHABET) for _ in range(n))})

    texts = [c["text"] for c in cases] + [moby]
    for c in cases:
        enc = tok.encode(c["text"])
        c["hf_ids"] = enc.ids
        decoded = tok.decode(enc.ids, skip_special_tokens=False)
        if decoded != c["text"]:
            c["hf_decoded"] = decoded
    book = tok.encode(moby).ids
    whole = {"chars": len(moby), "hf_n_ids": len(book), "hf_fnv1a64": fnv1a64(book)}
    versions = {"tokenizers": tokenizers.__version__, "gguf": version("gguf")}
    if not a.no_llamacpp:
        ids, v = llamacpp_ids(os.path.abspath(a.gguf), texts)
        versions.update(v)
        for c, l in zip(cases, ids):
            c["llamacpp_ids"] = l
        whole.update(llamacpp_n_ids=len(ids[-1]), llamacpp_fnv1a64=fnv1a64(ids[-1]))
    disagree = [c["name"] for c in cases if "llamacpp_ids" in c and c["llamacpp_ids"] != c["hf_ids"]]
    if "llamacpp_fnv1a64" in whole and whole["llamacpp_fnv1a64"] != whole["hf_fnv1a64"]:
        disagree.append("whole_book")

    res = {
        "what": "SmolLM2-135M-Instruct's token ids from the tokenizer in its GGUF file: Hugging Face tokenizers "
                "(hf_ids) and llama.cpp (llamacpp_ids), special tokens matched in the text, no BOS",
        "command": "python benches/peers/smollm2_tokenizer_ref.py " + " ".join(
            os.path.basename(x) if os.path.isabs(x) else x for x in sys.argv[1:]),
        "made_with": versions,
        "gguf": {"file": os.path.basename(a.gguf), "sha256": sha},
        "moby_dick": {"file": os.path.basename(a.moby_dick), "case_chars": a.moby_chars,
                      "sha256": hashlib.sha256(moby.encode("utf-8")).hexdigest(), "whole_book": whole},
        "fields": {"hf_decoded": "present where Hugging Face's decode of hf_ids is not the text "
                                 "(bytes the vocabulary lacks are dropped)",
                   "whole_book": "the ids of the whole of MOBY_DICK.txt: how many, and FNV-1a 64 of the ids in "
                                 "decimal joined by single spaces"},
        "hf_llamacpp_disagree": disagree,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    head = json.dumps({k: v for k, v in res.items() if k != "cases"}, ensure_ascii=False, indent=1)
    with open(tmp, "w", encoding="utf-8") as f:  # one case a line
        f.write(head[:-2] + ',\n "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n ]\n}\n")
    os.replace(tmp, a.out)
    n_ids = sum(len(c["hf_ids"]) for c in cases)
    print(f"wrote {a.out}: {len(cases)} texts, {n_ids} ids; HF and llama.cpp disagree on {len(disagree)}: {disagree}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
