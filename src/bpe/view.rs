//! Seeing tokens: where each token of a text starts and ends, as text or as coloured HTML
//! spans (for notebooks), and how many tokens different tokenizers need for the same text.

use super::base::{show_bytes, Rank};
use super::encoding::Encoding;

/// One token of a text: its id, its byte range in the text, and its bytes as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    /// The token id.
    pub id: Rank,
    /// Where its bytes start in the text.
    pub start: usize,
    /// Where its bytes end (exclusive).
    pub end: usize,
    /// The token's bytes, shown with [`show_bytes`] (a token may hold part of a character).
    pub text: String,
}

/// The tokens of `text` under `enc` (ordinary encoding), with their byte ranges.
pub fn token_spans(enc: &Encoding, text: &str) -> Vec<TokenSpan> {
    let mut start = 0;
    enc.encode_ordinary(text)
        .into_iter()
        .map(|id| {
            let bytes = enc
                .token_bytes(id)
                .expect("ids from encode are in the vocabulary");
            let span = TokenSpan {
                id,
                start,
                end: start + bytes.len(),
                text: show_bytes(bytes),
            };
            start = span.end;
            span
        })
        .collect()
}

/// The tokens joined with `|`: `"Hello| world|!"`.
pub fn show_tokens(enc: &Encoding, text: &str) -> String {
    let texts: Vec<String> = token_spans(enc, text).into_iter().map(|s| s.text).collect();
    texts.join("|")
}

/// Six pale colours, one per token in turn, as in the tiktokenizer web page.
const COLOURS: [&str; 6] = [
    "#fde68a", "#bbf7d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa",
];

/// The tokens as coloured HTML spans (the id shows when the mouse is on a token), with a
/// header line giving the counts. Spaces show as `·` so that a leading space is visible.
pub fn html_spans(enc: &Encoding, text: &str) -> String {
    let spans = token_spans(enc, text);
    let mut html = format!(
        "<div style=\"font-family:monospace;line-height:1.9\"><div><b>{}</b>: {} tokens, {} bytes, {:.2} bytes/token</div>",
        escape(&enc.name),
        spans.len(),
        text.len(),
        text.len() as f64 / spans.len().max(1) as f64
    );
    for (i, s) in spans.iter().enumerate() {
        let shown = escape(&s.text).replace(' ', "·").replace("\\n", "\\n<br>");
        html.push_str(&format!(
            "<span title=\"{}\" style=\"background:{};padding:1px 0;margin-right:1px\">{shown}</span>",
            s.id,
            COLOURS[i % COLOURS.len()]
        ));
    }
    html.push_str("</div>");
    html
}

/// For each encoding, the number of tokens `text` takes and its bytes per token.
pub fn compare_counts(encodings: &[&Encoding], text: &str) -> Vec<(String, usize, f64)> {
    encodings
        .iter()
        .map(|enc| {
            let n = enc.encode_ordinary(text).len();
            (enc.name.clone(), n, text.len() as f64 / n.max(1) as f64)
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
