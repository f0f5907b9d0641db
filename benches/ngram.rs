//! Chapter 1's hot path: counting n-grams and building a modified Kneser-Ney model, then
//! scoring text. Not a test: it prints throughput.
//!
//! usage: cargo bench --bench ngram -- [CORPUS] [ORDER]
//! (default: data/external/sotu_1790-2021.txt, order 5; fetch it with bash data/fetch.sh)

use std::time::Instant;

use llm_lessons::data;
use llm_lessons::ngram::{split_heldout, NgramConfig, NgramModel, Smoothing, Style};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let path = args
        .first()
        .map_or("data/external/sotu_1790-2021.txt", |s| s.as_str());
    let order: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let t = Instant::now();
    let sents = data::read_sentences(path)?;
    let read = t.elapsed().as_secs_f64();
    let (train, test) = split_heldout(&sents, 0.1);
    let tokens: usize = train.iter().map(|s| s.len() + 1).sum();
    println!(
        "{path}: {} sentences, {tokens} training tokens (words + </s>); read and split in {read:.2} s; {} threads",
        sents.len(),
        rayon::current_num_threads()
    );
    for smoothing in [Smoothing::AddK(1.0), Smoothing::ModifiedKneserNey] {
        let mut times = Vec::new();
        let mut model = None;
        for _ in 0..3 {
            let t = Instant::now();
            model = Some(NgramModel::train(
                train,
                &[],
                NgramConfig::new(order, smoothing),
            )?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let build = times[1];
        let model = model.expect("trained");
        let ngrams: usize = model.counts.by_order.iter().map(|m| m.len()).sum();
        let t = Instant::now();
        let e = model.evaluate(test);
        let score = t.elapsed().as_secs_f64();
        println!(
            "order {order} {smoothing}: count + build {build:.2} s (median of 3) = {:.2} M tokens/s, \
             {ngrams} distinct n-grams; scoring {} events in {score:.2} s = {:.2} M events/s; \
             test perplexity {:.1}",
            tokens as f64 / build / 1e6,
            e.events,
            e.events as f64 / score / 1e6,
            e.perplexity()
        );
    }
    // NLTK's peer figure: its bigram Kneser-Ney (discount 0.1) scores about 100 n-grams a
    // second. The same model here, with NLTK's conventions:
    let config = NgramConfig {
        order: 2,
        smoothing: Smoothing::KneserNey(Some(0.1)),
        style: Style::Nltk,
        min_count: 2,
    };
    let model = NgramModel::train(train, &[], config)?;
    let mut best = f64::INFINITY;
    let mut e = model.evaluate(test);
    for _ in 0..5 {
        let t = Instant::now();
        e = model.evaluate(test);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "NLTK-style bigram Kneser-Ney D=0.1: perplexity {:.3}; scoring {} events in {best:.4} s \
         (best of 5) = {:.2} M events/s",
        e.perplexity(),
        e.events,
        e.events as f64 / best / 1e6
    );
    Ok(())
}
