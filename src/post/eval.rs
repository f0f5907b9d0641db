//! A model scored by the judge: its answers to held-out requests, greedy or sampled, the
//! judge's verdicts, and how far it has moved from another model (the KL divergence on its
//! own answers).

use rayon::prelude::*;

use super::batch::{map_chunks, pack, sum_logp};
use super::task::{judge, prompt_ids, ChatVocab, Request, Verdict, IM_END};
use crate::data::grammar::Grammar;
use crate::gpt::generate::{generate_streaming, KvCache, Sampling, Stop};
use crate::gpt::{Activations, Gpt};
use crate::Result;

/// Most tokens an answer may take: the toy world's longest sentence (24 words) and the end.
pub const MAX_ANSWER: usize = 25;

/// The assistant's reply to `prompt`: its tokens, ended by `<|im_end|>` when it chose to
/// end within [`MAX_ANSWER`] tokens.
pub fn reply(model: &Gpt, prompt: &[u32], sampling: &Sampling) -> Result<Vec<u32>> {
    let mut cache = KvCache::with_capacity(&model.cfg, prompt.len() + MAX_ANSWER);
    let mut out = Vec::with_capacity(MAX_ANSWER);
    let stop = generate_streaming(
        model,
        &mut cache,
        prompt,
        MAX_ANSWER,
        sampling,
        &[IM_END],
        |id| {
            out.push(id);
            Ok(())
        },
    )?;
    if let Stop::EndOfTurn(id) = stop {
        out.push(id);
    }
    Ok(out)
}

/// The replies to `requests`, the `k`-th sampled with seed `sampling.seed + k`.
pub fn replies(
    model: &Gpt,
    vocab: &ChatVocab,
    requests: &[Request],
    sampling: &Sampling,
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    requests
        .par_iter()
        .enumerate()
        .map(|(k, r)| {
            let prompt = prompt_ids(vocab, r)?;
            let s = Sampling {
                seed: sampling.seed.wrapping_add(k as u64),
                ..*sampling
            };
            let answer = reply(model, &prompt, &s)?;
            Ok((prompt, answer))
        })
        .collect()
}

/// The judge's verdicts on a set of replies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    /// Count of each verdict, in the order of [`Verdict::ALL`].
    pub counts: [usize; 6],
}

impl Scores {
    pub fn of(verdicts: &[Verdict]) -> Scores {
        let mut s = Scores::default();
        for v in verdicts {
            let k = Verdict::ALL.iter().position(|x| x == v).expect("a verdict");
            s.counts[k] += 1;
        }
        s
    }

    pub fn n(&self) -> usize {
        self.counts.iter().sum()
    }

    /// The fraction judged correct.
    pub fn accuracy(&self) -> f64 {
        self.counts[0] as f64 / self.n().max(1) as f64
    }

    /// The fraction with verdict `v`.
    pub fn rate(&self, v: Verdict) -> f64 {
        let k = Verdict::ALL
            .iter()
            .position(|x| *x == v)
            .expect("a verdict");
        self.counts[k] as f64 / self.n().max(1) as f64
    }
}

/// The model's replies to `requests` and the judge's verdicts on them.
pub fn score(
    model: &Gpt,
    grammar: &Grammar,
    vocab: &ChatVocab,
    requests: &[Request],
    sampling: &Sampling,
) -> Result<(Scores, Vec<Vec<u32>>)> {
    let out = replies(model, vocab, requests, sampling)?;
    let verdicts: Vec<Verdict> = requests
        .iter()
        .zip(&out)
        .map(|(r, (_, a))| judge(grammar, vocab, r, a))
        .collect();
    Ok((
        Scores::of(&verdicts),
        out.into_iter().map(|(_, a)| a).collect(),
    ))
}

/// Each answer's summed log-probability under `model`, `log π(answer | prompt)`.
pub fn answer_logps(model: &Gpt, conversations: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f64>> {
    map_chunks(conversations, 16, |chunk| {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|(p, a)| [&p[..], a].concat()).collect();
        let t = seqs.iter().map(|s| s.len() - 1).max().unwrap_or(1);
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let packed = pack(&refs, refs.len(), t)?;
        let mut acts = Activations::new(&model.cfg, packed.b, t);
        model.forward_loss(&mut acts, &packed.inputs, &packed.targets)?;
        Ok(chunk
            .iter()
            .enumerate()
            .map(|(r, (p, _))| sum_logp(&acts.losses, &packed.positions(r, p.len(), |_| true)))
            .collect())
    })
}

// ANCHOR: kl
/// `KL(π ‖ π_ref)` per answer, estimated on answers sampled from `π`:
/// `E_{y∼π} [log π(y|x) − log π_ref(y|x)]`, the mean over the `sampled` conversations.
pub fn kl_estimate(policy: &Gpt, reference: &Gpt, sampled: &[(Vec<u32>, Vec<u32>)]) -> Result<f64> {
    let (p, r) = (
        answer_logps(policy, sampled)?,
        answer_logps(reference, sampled)?,
    );
    Ok(p.iter().zip(&r).map(|(a, b)| a - b).sum::<f64>() / sampled.len().max(1) as f64)
}
// ANCHOR_END: kl
