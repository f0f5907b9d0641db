//! Known answers worked out by hand, the fast trainer against the plain one, the fast split
//! against fancy-regex, round trips on random strings, and every bad input an error.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::base::{best_pair, merge, pair_counts, MergeTable};
use super::basic::{self, COURSE_TEXT};
use super::encoding::{parse_tiktoken, Allowed, Encoding};
use super::split::{parallel_parts, Pattern, Split, CL100K_PATTERN, GPT2_PATTERN, SMOLLM_PATTERN};
use super::train;
use crate::Error;

/// Characters that stress a tokenizer: every kind of whitespace, digits, contractions,
/// punctuation, accents written as combining marks, CJK, Arabic, Devanagari, emoji with
/// joiners and skin tones, and the text of special tokens.
const ALPHABET: &[&str] = &[
    " ",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{a0}",
    "\u{2003}",
    "\u{3000}",
    "\u{200b}",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\u{1680}",
    "\u{2009}",
    "\u{202f}",
    "\u{205f}",
    "\u{1c}",
    "\u{b}",
    "\u{c}",
    "a",
    "b",
    "e",
    "t",
    "h",
    "Z",
    "'",
    "'s",
    "'LL",
    "'ve",
    "0",
    "1",
    "2",
    "3",
    "٣",
    "½",
    "²",
    "Ⅻ",
    "１",
    ".",
    ",",
    "!",
    "?",
    "-",
    "_",
    "(",
    ")",
    "{",
    "}",
    "$",
    "\u{301}",
    "e\u{301}",
    "\u{308}",
    "é",
    "ß",
    "İ",
    "ﬁ",
    "日本",
    "語",
    "한국",
    "Ж",
    "щ",
    "ا",
    "ل",
    "ह",
    "ि",
    "😀",
    "👍🏽",
    "👩‍👩‍👧",
    "🇫🇷",
    "\u{fe0f}",
    "\u{0}",
    "\u{7f}",
    "<|endoftext|>",
    "\u{feff}",
    "\u{10ffff}",
    "fn",
    "x",
    "=",
    ";",
];

/// A seeded random string of 0..max_parts pieces from [`ALPHABET`].
fn random_text(rng: &mut ChaCha8Rng, max_parts: usize) -> String {
    let n = rng.gen_range(0..=max_parts);
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
        .collect()
}

fn random_texts(seed: u64, n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| random_text(&mut rng, 24)).collect()
}

fn tiny_encoding(pattern: Pattern) -> Encoding {
    let mut text = COURSE_TEXT.repeat(3);
    text.push_str(&random_texts(5, 200).concat());
    train::train(&text, 400, pattern)
        .unwrap()
        .encoding("tiny")
        .unwrap()
}

#[test]
fn pair_counts_and_merge_known_answers() {
    // "aaabdaaabac" (the Wikipedia example): aa occurs 4 times.
    let ids: Vec<u32> = b"aaabdaaabac".iter().map(|&b| b as u32).collect();
    let counts = pair_counts(&ids);
    assert_eq!(counts[&(97, 97)], 4);
    assert_eq!(counts[&(97, 98)], 2);
    assert_eq!(best_pair(&counts), Some(((97, 97), 4)));
    let merged = merge(&ids, (97, 97), 256);
    assert_eq!(merged, [256, 97, 98, 100, 256, 97, 98, 97, 99]);
}

#[test]
fn course_example_word_counts_and_first_merges() {
    let words = basic::word_counts(COURSE_TEXT);
    assert_eq!(words[0], ("this".to_string(), 3));
    assert_eq!(words.iter().find(|(w, _)| w == "is").unwrap().1, 2);
    assert_eq!(words.iter().find(|(w, _)| w == ".").unwrap().1, 3);
    let t = basic::train_words(&words, 256 + 6);
    let made: Vec<String> = t
        .table
        .merges
        .iter()
        .map(|m| t.table.token_text(m.id))
        .collect();
    // "is": this (3) + is (2) = 5. "th": this (3) + the (1) + algorithms (1) = 5 too, a tie
    // that the smaller pair (i, s) < (t, h) wins; "th" comes next, then "this" (3) at step 5.
    assert_eq!(made[..2], ["is", "th"]);
    assert_eq!(t.table.merges[0].count, 5);
    assert_eq!(t.table.merges[1].count, 5);
    assert_eq!(made[4], "this");
    assert_eq!(t.splits.len(), 7);
}

#[test]
fn ties_go_to_the_smallest_pair() {
    // "ab" and "cd" both occur twice: (a, b) < (c, d), so "ab" is merged first, whatever
    // the order of the words.
    for text in ["ab ab cd cd", "cd cd ab ab", "cd ab cd ab"] {
        let t = basic::train_words(&basic::word_counts(text), 257);
        assert_eq!(t.table.token_text(256), "ab", "{text}");
        let fast = train::train_piece_counts(&[(b"cd", 2), (b"ab", 2)], 257);
        assert_eq!(fast.token_text(256), "ab");
    }
}

#[test]
fn fast_trainer_gives_the_plain_trainers_merges() {
    let mut texts = vec![COURSE_TEXT.to_string(), "aaaa aaa aa a".into()];
    texts.extend(random_texts(1, 30).into_iter().map(|t| t.repeat(3)));
    texts.push(random_texts(2, 300).concat());
    for text in &texts {
        for pattern in [Pattern::Gpt2, Pattern::Cl100k] {
            let split = pattern.split();
            let mut words: Vec<(Vec<u8>, usize)> = train::piece_counts(text, &split)
                .into_iter()
                .map(|(p, c)| (p.as_bytes().to_vec(), c))
                .collect();
            words.sort();
            let plain = basic::train_words(&words, 256 + 60).table;
            let fast = train::train(text, 256 + 60, pattern);
            let fast = match fast {
                Ok(t) => t.table,
                Err(_) => {
                    assert!(text.is_empty());
                    continue;
                }
            };
            assert_eq!(plain.merges, fast.merges, "{pattern:?} on {text:?}");
        }
    }
}

#[test]
fn merge_table_reuses_an_id_for_bytes_made_twice() {
    let mut t = MergeTable::bytes_only();
    let ab = t.push((97, 98), 1);
    let abc = t.push((ab, 99), 1);
    let bc = t.push((98, 99), 1);
    let again = t.push((97, bc), 1);
    assert_eq!(again, abc);
    assert_eq!(t.vocab_size(), 259);
    assert_eq!(t.merges.len(), 4);
}

#[test]
fn fast_split_equals_fancy_regex() {
    for (pattern, regex) in [
        (Pattern::Gpt2, GPT2_PATTERN),
        (Pattern::Cl100k, CL100K_PATTERN),
        (Pattern::Smollm, SMOLLM_PATTERN),
    ] {
        let fast = pattern.split();
        let fancy = Split::fancy(regex).unwrap();
        for text in random_texts(3, 3000) {
            assert_eq!(
                fast.pieces(&text),
                fancy.pieces(&text),
                "{pattern:?} on {text:?}"
            );
        }
        for text in [
            "  a",
            " \n x",
            "a  \n  b  ",
            "x\n\n\ny",
            "\t\tword",
            "  \u{3000}\n",
            "a  2",
            "x =   10\n",
            " \u{b2}\u{b2} 7 ",
        ] {
            assert_eq!(
                fast.pieces(text),
                fancy.pieces(text),
                "{pattern:?} on {text:?}"
            );
        }
    }
}

/// Hugging Face tokenizers' `Sequence[Digits(individual_digits=True), ByteLevel]` (its
/// `pre_tokenize_str`, tokenizers 0.23.3) on these strings gives these pieces.
#[test]
fn smollm_split_puts_every_digit_apart_then_splits_as_gpt2() {
    let cases: &[(&str, &[&str])] = &[
        ("a  2", &["a", "  ", "2"]),
        ("2024", &["2", "0", "2", "4"]),
        ("x1y22z333", &["x", "1", "y", "2", "2", "z", "3", "3", "3"]),
        ("3.14159", &["3", ".", "1", "4", "1", "5", "9"]),
        ("1,000", &["1", ",", "0", "0", "0"]),
        ("year 2026!", &["year", " ", "2", "0", "2", "6", "!"]),
        ("\t\t42", &["\t\t", "4", "2"]),
        ("  3 4  5", &["  ", "3", " ", "4", "  ", "5"]),
        ("x =   10", &["x", " =", "   ", "1", "0"]),
        ("it's 2", &["it", "'s", " ", "2"]),
        ("a \n\n 7", &["a", " \n\n ", "7"]),
        ("7\u{a0} 8", &["7", "\u{a0} ", "8"]),
        // numeric beyond ASCII digits: char::is_numeric, \p{N} (Nd, Nl, No)
        ("x\u{b2}+1", &["x", "\u{b2}", "+", "1"]),
        ("\u{216b}!", &["\u{216b}", "!"]),
        ("\u{663}\u{664}", &["\u{663}", "\u{664}"]),
        ("\u{ff11}\u{ff12} a", &["\u{ff11}", "\u{ff12}", " a"]),
        ("\u{bd} ", &["\u{bd}", " "]),
        ("", &[]),
    ];
    let fancy = Split::fancy(SMOLLM_PATTERN).unwrap();
    for &(text, want) in cases {
        assert_eq!(Pattern::Smollm.split().pieces(text), want, "{text:?}");
        assert_eq!(fancy.pieces(text), want, "{text:?}");
    }
    // The fast split cuts at char::is_numeric (as Hugging Face's Digits does), the regex at
    // \p{N}: the same characters, except those the regex crate's Unicode tables do not
    // have yet (std may know a newer Unicode version: Rust 1.95 has Unicode 17's new digits)
    let numeric = regex_automata::meta::Regex::new(r"^\p{N}$").unwrap();
    let unassigned = regex_automata::meta::Regex::new(r"^\p{Cn}$").unwrap();
    for c in (0..=0x10ffff).filter_map(char::from_u32) {
        let mut buf = [0; 4];
        let c_str: &str = c.encode_utf8(&mut buf);
        if c.is_numeric() != numeric.is_match(c_str) {
            assert!(unassigned.is_match(c_str), "{c:?}");
        }
    }
    // where GPT-2 differs: it keeps digits together, with a space in front
    assert_eq!(Pattern::Gpt2.split().pieces("a  2"), ["a", " ", " 2"]);
    assert_eq!("smollm".parse::<Pattern>().unwrap(), Pattern::Smollm);
}

#[test]
fn parallel_parts_do_not_change_the_pieces() {
    let text = random_texts(4, 2000).join("\n");
    for pattern in [Pattern::Gpt2, Pattern::Cl100k, Pattern::Smollm] {
        let split = pattern.split();
        let whole = split.pieces(&text);
        let parts: Vec<&str> = parallel_parts(&text, 64)
            .iter()
            .flat_map(|p| split.pieces(p))
            .collect();
        assert_eq!(parts, whole);
    }
    assert_eq!(parallel_parts(&text, 100).concat(), text);
}

#[test]
fn decode_encode_round_trips_on_random_strings() {
    for pattern in [Pattern::Gpt2, Pattern::Cl100k, Pattern::Smollm] {
        let enc = tiny_encoding(pattern);
        for text in random_texts(6, 2000) {
            let ids = enc.encode_ordinary(&text);
            assert_eq!(enc.decode(&ids).unwrap(), text);
            let with_special = enc.encode(&text, Allowed::All).unwrap();
            assert_eq!(enc.decode(&with_special).unwrap(), text);
        }
        let long = random_texts(7, 20_000).join("\n");
        assert_eq!(
            enc.encode_ordinary_parallel(&long),
            enc.encode_ordinary(&long)
        );
    }
}

#[test]
fn every_byte_sequence_round_trips_through_decode_bytes() {
    // Any text encodes, because every byte is a token: byte fallback.
    let enc = tiny_encoding(Pattern::Gpt2);
    for b in 0..=255u8 {
        assert_eq!(enc.rank(&[b]), Some(b as u32));
    }
    let ids = enc.encode_ordinary("日本語 😀");
    assert_eq!(enc.decode_bytes(&ids).unwrap(), "日本語 😀".as_bytes());
}

#[test]
fn special_tokens() {
    let enc = tiny_encoding(Pattern::Gpt2);
    let eot = enc.special_token("<|endoftext|>").unwrap();
    assert_eq!(eot as usize, enc.n_ranks());
    let ids = enc.encode("a<|endoftext|>b", Allowed::All).unwrap();
    assert_eq!(ids, [97, eot, 98]);
    assert!(!enc.encode_ordinary("a<|endoftext|>b").contains(&eot));
    let only = enc
        .encode("a<|endoftext|>b", Allowed::Only(&["<|endoftext|>"]))
        .unwrap();
    assert_eq!(only, ids);
    let e = enc
        .encode("a", Allowed::Only(&["<|im_start|>"]))
        .unwrap_err();
    assert!(matches!(e, Error::UnknownSpecialToken { .. }), "{e}");
    assert!(e.to_string().contains("<|endoftext|>"), "{e}");
    // User-defined special tokens.
    let mut enc = enc;
    enc.add_special("<|im_start|>", eot + 1).unwrap();
    let ids = enc.encode("<|im_start|>hi", Allowed::All).unwrap();
    assert_eq!(ids[0], eot + 1);
    assert_eq!(enc.decode(&ids).unwrap(), "<|im_start|>hi");
    assert!(enc.add_special("<|x|>", 5).is_err());
    assert!(enc.add_special("<|im_start|>", eot + 2).is_err());
}

#[test]
fn decode_errors_are_clear() {
    let enc = tiny_encoding(Pattern::Gpt2);
    let e = enc.decode(&[97, 1_000_000]).unwrap_err();
    assert!(
        matches!(e, Error::UnknownTokenId { id: 1_000_000, .. }),
        "{e}"
    );
    // "é" is two bytes: the first alone is not UTF-8.
    let e = enc.decode(&[104, 0xc3]).unwrap_err();
    match &e {
        Error::InvalidUtf8 {
            offset,
            token_index,
            id,
        } => assert_eq!((*offset, *token_index, *id), (1, 1, 0xc3)),
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("decode_bytes"), "{e}");
    assert_eq!(enc.decode_bytes(&[104, 0xc3]).unwrap(), [104, 0xc3]);
}

fn parse_err(text: &str) -> String {
    let e = parse_tiktoken(text, Path::new("ranks.tiktoken")).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    e.to_string()
}

#[test]
fn malformed_rank_files_are_errors_with_line_numbers() {
    assert_eq!(
        parse_tiktoken("YQ== 0\nYg== 1\n\n", Path::new("x")).unwrap(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    let e = parse_err("YQ== 0\n!!!! 1\n");
    assert!(e.contains("line 2") && e.contains("base64"), "{e}");
    let e = parse_err("YQ== 0\nYg== 0\n");
    assert!(
        e.contains("line 2") && e.contains("rank 0 is already"),
        "{e}"
    );
    let e = parse_err("YQ== 0\nYg== 4000000000\n");
    assert!(
        e.contains("line 2") && e.contains("no token has rank 1"),
        "{e}"
    );
    let e = parse_err("YQ== 0\nYQ== 1\n");
    assert!(
        e.contains("line 2") && e.contains("already on line 1"),
        "{e}"
    );
    let e = parse_err("YQ== 0\nYg== 2\n");
    assert!(
        e.contains("line 2") && e.contains("no token has rank 1"),
        "{e}"
    );
    let e = parse_err("YQ== 0\nYg==\n");
    assert!(e.contains("line 2") && e.contains("expected"), "{e}");
    let e = parse_err("YQ== zero\n");
    assert!(e.contains("line 1") && e.contains("not a number"), "{e}");
    let e = parse_err("YQ== 0 7\n");
    assert!(e.contains("line 1"), "{e}");
    // Missing bytes: a byte-level vocabulary needs all 256.
    let e = Encoding::new("x", vec![b"a".to_vec()], Pattern::Gpt2.split(), &[]).unwrap_err();
    assert!(e.to_string().contains("byte 0x00"), "{e}");
}

/// Replaying a trained table's merges gives, piece by piece, what the table's own plain
/// encoder gives (the reference replay of `base`), on random strings.
#[test]
fn from_merges_replays_the_table_as_its_plain_encoder_does() {
    let mut text = COURSE_TEXT.repeat(3);
    text.push_str(&random_texts(5, 200).concat());
    let trained = train::train(&text, 400, Pattern::Smollm).unwrap();
    let table = &trained.table;
    let pairs: Vec<(u32, u32)> = table.merges.iter().map(|m| m.pair).collect();
    let tokens = table.tokens.iter().cloned().map(Some).collect();
    let enc = Encoding::from_merges("t", tokens, &pairs, Pattern::Smollm.split(), &[]).unwrap();
    assert_eq!(enc.merges(), Some(&pairs[..]));
    for text in random_texts(9, 500).iter().chain([&text]) {
        let mut want = Vec::new();
        Pattern::Smollm
            .split()
            .for_each_piece(text, |p| want.extend(table.encode_bytes(p.as_bytes())));
        assert_eq!(enc.encode_ordinary(text), want, "{text:?}");
        assert_eq!(enc.decode(&want).unwrap(), *text);
    }
}

/// A hand-made vocabulary of the kind a GGUF file holds: special tokens first, then the
/// bytes (one missing), then merges; where replaying the merges and tiktoken's rule part.
#[test]
fn from_merges_follows_the_list_not_the_ranks() {
    // ids: 0 <|im_start|>, 1 unused, 2.. the bytes but 0x04, then bc, ab, abc, ()
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None, None];
    tokens.extend((0..=255u8).filter(|&b| b != 4).map(|b| Some(vec![b])));
    let id = |t: &[u8]| tokens.iter().position(|x| x.as_deref() == Some(t)).unwrap() as u32;
    let (a, b, c, space) = (id(b"a"), id(b"b"), id(b"c"), id(b" "));
    let (open, close) = (id(b"("), id(b")"));
    let n = tokens.len() as u32;
    let (bc, ab, abc, parens) = (n, n + 1, n + 2, n + 3);
    let new = [&b"bc"[..], b"ab", b"abc", b"()"];
    tokens.extend(new.map(|t| Some(t.to_vec())));
    let merges = [(b, c), (a, b), (ab, c), (open, close)];
    let special = [("<|im_start|>", 0)];
    let enc = Encoding::from_merges(
        "hand",
        tokens.clone(),
        &merges,
        Pattern::Gpt2.split(),
        &special,
    )
    .unwrap();
    // "abc": (b, c) merges first, and (a, bc) is no merge: two tokens, though "abc" is one
    // token and tiktoken's rule would give it
    assert_eq!(enc.rank(b"abc"), Some(abc));
    assert_eq!(enc.encode_ordinary("abc"), [a, bc]);
    assert_eq!(enc.encode_ordinary("ab"), [ab]);
    assert_eq!(enc.encode_ordinary("abcabc ab"), [a, bc, a, bc, space, ab]);
    // the missing byte is dropped, and its neighbours in the piece merge across it
    // (Hugging Face's BPE)
    assert_eq!(enc.encode_ordinary("(\u{4})"), [parens]);
    assert_eq!(enc.encode_ordinary("a\u{4}b"), [a, b]);
    // special tokens sit at their ids; the unused id is no token
    let ids = enc.encode("<|im_start|>ab", Allowed::All).unwrap();
    assert_eq!(ids, [0, ab]);
    assert_eq!(enc.decode(&ids).unwrap(), "<|im_start|>ab");
    assert!(enc.decode(&[1]).is_err());
    assert!(enc
        .save_tiktoken(std::env::temp_dir().join("never.tiktoken"))
        .is_err());
    // a merge must join ordinary tokens and make one
    let err = |merges: &[(u32, u32)], special: &[(&str, u32)]| {
        Encoding::from_merges(
            "hand",
            tokens.clone(),
            merges,
            Pattern::Gpt2.split(),
            special,
        )
        .unwrap_err()
        .to_string()
    };
    let e = err(&[(a, 1)], &[]);
    assert!(e.contains("merge 0 joins id 1"), "{e}");
    let e = err(&[(c, a)], &[]);
    assert!(
        e.contains("merge 0 makes \"ca\", which is not a token"),
        "{e}"
    );
    let e = err(&[], &[("<x>", a)]);
    assert!(e.contains("already taken"), "{e}");
}

#[test]
fn save_and_load_round_trip() {
    let enc = tiny_encoding(Pattern::Cl100k);
    let path =
        std::env::temp_dir().join(format!("llm-bpe-roundtrip-{}.tiktoken", std::process::id()));
    enc.save_tiktoken(&path).unwrap();
    let back = Encoding::load_tiktoken(&path, Pattern::Cl100k).unwrap();
    std::fs::remove_file(&path).unwrap();
    for text in random_texts(8, 200) {
        assert_eq!(back.encode_ordinary(&text), enc.encode_ordinary(&text));
    }
    assert_eq!(back.n_ranks(), enc.n_ranks());
}

#[test]
fn merge_table_encoding_agrees_with_the_rank_encoding_on_the_training_text() {
    // Ranks and merges are two views of one training; on a small vocabulary they agree.
    let t = train::train(COURSE_TEXT, 256 + 30, Pattern::Gpt2).unwrap();
    let enc = t.encoding("course").unwrap();
    let mut by_table = Vec::new();
    Pattern::Gpt2.split().for_each_piece(COURSE_TEXT, |p| {
        by_table.extend(t.table.encode_bytes(p.as_bytes()))
    });
    assert_eq!(by_table, enc.encode_ordinary(COURSE_TEXT));
}

#[test]
fn tour_step_compresses_and_writes_a_rank_file() {
    let dir = std::env::temp_dir().join(format!("llm-bpe-tour-{}", std::process::id()));
    let report = super::tour::chapter_3(&dir, crate::report::TourSize::Quick).unwrap();
    assert!(report.text.contains("bytes/token"), "{}", report.text);
    let enc = Encoding::load_tiktoken(&report.files[0], Pattern::Gpt2).unwrap();
    assert!(enc.encode_ordinary("The queens meet their father.").len() <= 6);
    let svg = std::fs::read_to_string(&report.files[1]).unwrap();
    assert!(svg.contains("toy world (trained here)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_effects_table_has_a_row_per_text_and_a_column_per_encoding() {
    let t = train::train(COURSE_TEXT, 256 + 30, Pattern::Gpt2).unwrap();
    let enc = t.encoding("course").unwrap();
    let table = super::tour::effects_markdown(&[&enc, &enc]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2 + super::tour::EFFECT_TEXTS.len());
    assert_eq!(lines[0], "| what | text | course | course |");
    // "2026" has no merge here: four byte tokens.
    assert!(
        lines[2].ends_with("| 4: `2` `0` `2` `6` | 4: `2` `0` `2` `6` |"),
        "{}",
        lines[2]
    );
    // Sentences give tokens per word: English has 6 words.
    assert!(lines[8].contains("per word)"), "{}", lines[8]);
}

/// The course example's merges, as the book shows them.
fn course_table() -> String {
    let words = basic::word_counts(COURSE_TEXT);
    let t = basic::train_words(&words, 256 + 12);
    basic::merges_markdown(
        &t,
        &words,
        &["this", "is", "tokenization", "tokenizer", "several"],
        12,
    )
}

#[test]
fn the_books_merge_table_is_what_the_code_does() {
    // `BPE_UPDATE_BOOK=1 cargo test --lib book` rewrites the table in the book.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/ch03_bpe.md");
    let book = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (
        "<!-- merges: made by basic::merges_markdown -->\n",
        "<!-- merges end -->",
    );
    let i = book.find(start).expect("the start marker") + start.len();
    let j = book.find(end).expect("the end marker");
    let table = course_table();
    if std::env::var_os("BPE_UPDATE_BOOK").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &book[..i], &book[j..])).unwrap();
    } else {
        assert_eq!(
            book[i..j],
            table,
            "run BPE_UPDATE_BOOK=1 cargo test --lib book"
        );
    }
}

#[test]
fn gpt2_files_load_and_bad_ones_are_errors() {
    use super::encoding::gpt2_char_to_byte;
    let dir = std::env::temp_dir().join(format!("llm-bpe-gpt2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // GPT-2 orders the 256 byte tokens by its character table (printable bytes first).
    let mut chars: Vec<(char, u8)> = gpt2_char_to_byte().into_iter().collect();
    chars.sort_by_key(|&(c, _)| c as u32);
    let mut encoder: Vec<(String, u32)> = chars
        .iter()
        .enumerate()
        .map(|(i, &(c, _))| (c.to_string(), i as u32))
        .collect();
    encoder.push(("Ġt".into(), 256));
    encoder.push(("<|endoftext|>".into(), 257));
    let json: serde_json::Map<String, serde_json::Value> =
        encoder.into_iter().map(|(k, v)| (k, v.into())).collect();
    let (json_path, bpe_path) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    std::fs::write(&json_path, serde_json::to_string(&json).unwrap()).unwrap();
    std::fs::write(&bpe_path, "#version: 0.2\nĠ t\n").unwrap();
    let enc = Encoding::load_gpt2(&json_path, &bpe_path).unwrap();
    assert_eq!(enc.encode_ordinary(" t"), [256]);
    assert_eq!(enc.special_token("<|endoftext|>").unwrap(), 257);
    assert_eq!(enc.decode(&enc.encode_ordinary("a t!")).unwrap(), "a t!");
    std::fs::write(&bpe_path, "#version: 0.2\nĠ a\n").unwrap();
    let e = Encoding::load_gpt2(&json_path, &bpe_path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("merge 0"), "{e}");
    std::fs::write(&bpe_path, "#version: 0.2\nĠt\n").unwrap();
    let e = Encoding::load_gpt2(&json_path, &bpe_path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("two tokens"), "{e}");
    std::fs::write(&json_path, "[1, 2]").unwrap();
    let e = Encoding::load_gpt2(&json_path, &bpe_path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("JSON"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
