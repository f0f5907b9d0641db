//! Chapter 6 on the toy world: the tour's chapter 4 model stored in every format, each
//! format's cost (bits per weight, bytes) against what it loses (the weights' error,
//! measured and predicted by the uniform rounding model, and the test cross-entropy read
//! against the grammar's true entropy), and how fast it scores against f32.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::matrix::{Format, QMatrix};
use super::outliers::{outlier_comparison, DEFAULT_THRESHOLD};
use super::report::{f32_projections, normalized_errors, report, ReportRow, Scheme};
use super::stats::{snr_by_bits, Histogram, DB_PER_BIT};
use crate::data::grammar::{true_cross_entropy, Grammar};
use crate::data::write_atomic;
use crate::gpt::tour::{chapter_4_model, sentence_cross_entropy, tour_config};
use crate::gpt::{Activations, Gpt};
use crate::plot::{LineChart, Series};
use crate::report::{StepReport, TourSize};
use crate::Result;

/// The largest |x| entering any projection of `model` (the normed inputs of attention and
/// MLP) over the first `context` tokens of `ids`, and how many of the `(layer, norm,
/// column)` features reach `threshold` anywhere: LLM.int8's outlier features, if any.
pub fn activation_outliers(
    model: &Gpt,
    ids: &[u32],
    threshold: f32,
) -> Result<(f32, usize, usize)> {
    let t = model.cfg.context.min(ids.len().saturating_sub(1)).max(1);
    let mut acts = Activations::new(&model.cfg, 1, t);
    model.forward(&mut acts, &ids[..t])?;
    let c = model.cfg.d_model;
    let (mut max, mut outliers, mut features) = (0.0f32, 0, 0);
    for layer in &acts.layers {
        for x in [&layer.ln1, &layer.ln2] {
            for col in 0..c {
                let m = x
                    .iter()
                    .skip(col)
                    .step_by(c)
                    .fold(0.0f32, |m, v| m.max(v.abs()));
                max = max.max(m);
                outliers += usize::from(m >= threshold);
                features += 1;
            }
        }
    }
    Ok((max, outliers, features))
}

/// Chapter 6's step of the tour: the table of formats, and `out/ch06/{formats.csv,
/// weights.svg, rounding_error.svg, snr_by_bits.svg, bits_vs_cross_entropy.svg,
/// test_ids.txt}`.
pub fn chapter_6(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch06");
    let config = tour_config(size);
    let (model, vocab) = chapter_4_model(out_dir, &config)?;
    // seven scorings of the test sentences: the quick tour scores a fifth of its 500
    let (n_test, seed) = size.pick(config.test, (config.test.0 / 5, config.test.1));
    let test = Grammar::toy_world().generate(n_test, seed);
    let ids = vocab.encode(&test);
    let truth = true_cross_entropy(&test);
    let rows = report(&model, &Scheme::REPORT, |m| {
        Ok((sentence_cross_entropy(m, &ids)?, ids.len() - 1))
    })?;
    let by = |s: Scheme| rows.iter().find(|r| r.scheme == s).expect("in REPORT");
    let f32_row = by(Scheme::Ggml(Format::F32));

    let mut text = String::new();
    let _ = writeln!(
        text,
        "chapter 4's llama-tiny ({} parameters) with its projections in each format (norms and embeddings stay f32, and so do the {} down_proj in the 32-value block formats: their rows hold d_ff = {} values), scored on {} test sentences ({} tokens)",
        model.cfg.n_params(),
        by(Scheme::Ggml(Format::Q8_0)).kept_f32.len(),
        model.cfg.d_ff,
        test.len(),
        ids.len() - 1,
    );
    text.push_str(&table(&rows, truth, f32_row.tokens_per_s));
    let (q8, row, tensor) = (
        by(Scheme::Ggml(Format::Q8_0)),
        by(Scheme::PerRowInt8),
        by(Scheme::PerTensorInt8),
    );
    let _ = writeln!(
        text,
        "  why blocks, at 8 bits: one step per tensor {:.1} dB, per row {:.1} dB, per 32-value block (q8_0) {:.1} dB SNR; cross-entropy {:+.4}, {:+.4}, {:+.4} nats/word against f32",
        tensor.error.snr_db,
        row.error.snr_db,
        q8.error.snr_db,
        tensor.cross_entropy - f32_row.cross_entropy,
        row.cross_entropy - f32_row.cross_entropy,
        q8.cross_entropy - f32_row.cross_entropy,
    );

    // the error analysis on one real matrix: absmax at 2 to 8 bits
    let projections = f32_projections(&model);
    let (name, _, _, up) = projections
        .iter()
        .find(|p| p.0.ends_with("layers.1.mlp.up_proj"))
        .or(projections.first())
        .expect("llama-tiny has projections");
    let snr = snr_by_bits(up, &[2, 3, 4, 5, 6, 7, 8])?;
    let per_bit = (snr[6].measured_db - snr[3].measured_db) / 3.0;
    let _ = writeln!(
        text,
        "  absmax on {name} ({} values): SNR measured / predicted by Δ²/12 at 4 bits {:.2} / {:.2} dB, at 8 bits {:.2} / {:.2} dB; {per_bit:.2} dB per bit from 5 to 8 (the limit {DB_PER_BIT:.2})",
        up.len(),
        snr[2].measured_db,
        snr[2].predicted_db,
        snr[6].measured_db,
        snr[6].predicted_db,
    );

    let (max, outliers, features) = activation_outliers(&model, &ids, DEFAULT_THRESHOLD)?;
    let constructed = outlier_comparison(64, 512, 256, 4, DEFAULT_THRESHOLD, 1)?;
    let _ = writeln!(
        text,
        "  LLM.int8: this model's projection inputs reach |x| = {max:.2} at most, {outliers} of {features} features at or over {DEFAULT_THRESHOLD}; on a constructed case (64 x 512 N(0, 1) with 4 outlier columns of |x| in [20, 60]) int8's relative error is {:.2e}, with the outlier columns kept in f32 {:.2e}",
        constructed.int8_rel_error, constructed.mixed_rel_error,
    );

    let mut files: Vec<PathBuf> = Vec::new();
    let csv_path = dir.join("formats.csv");
    write_atomic(&csv_path, csv(&rows, truth).as_bytes())?;
    files.push(csv_path);
    files.extend(charts(&dir, &model, &rows, truth, &snr, name)?);
    let ids_path = dir.join("test_ids.txt");
    let ids_text: Vec<String> = ids.iter().map(u32::to_string).collect();
    write_atomic(&ids_path, (ids_text.join(" ") + "\n").as_bytes())?;
    files.push(ids_path);
    let _ = writeln!(
        text,
        "  chapter 6 took {:.1} s (`llm quant report --model {} --ids {}` prints the same table for any model)",
        start.elapsed().as_secs_f64(),
        out_dir.join("ch04").join("model").display(),
        dir.join("test_ids.txt").display()
    );
    Ok(StepReport {
        title: "Chapter 6: quantization".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}

/// The tour's table: the report's columns, the cross-entropy's gap to the grammar, and
/// scoring speed against f32.
fn table(rows: &[ReportRow], truth: f64, f32_speed: f64) -> String {
    let mut s = format!(
        "  {:<12} {:>7} {:>12} {:>9} {:>9} {:>13} {:>10} {:>8} {:>15}\n",
        "format",
        "bits/wt",
        "weight bytes",
        "max |e|",
        "RMS e",
        "SNR / Δ²/12",
        "nats/word",
        "- truth",
        "tokens/s (×f32)"
    );
    for r in rows {
        let snr = if r.error.snr_db.is_finite() {
            format!("{:.1} / {:.1}", r.error.snr_db, r.predicted_snr_db)
        } else {
            "exact".into()
        };
        let _ = writeln!(
            s,
            "  {:<12} {:>7.2} {:>12} {:>9.2e} {:>9.2e} {:>13} {:>10.4} {:>8.4} {:>8.0} ({:.2})",
            r.scheme.name(),
            r.bits_per_weight,
            r.weight_bytes,
            r.error.max_abs,
            r.error.rms,
            snr,
            r.cross_entropy,
            r.cross_entropy - truth,
            r.tokens_per_s,
            r.tokens_per_s / f32_speed
        );
    }
    let _ = writeln!(
        s,
        "  {:<12} {:>7} {:>12} {:>9} {:>9} {:>13} {:>10.4}",
        "the grammar", "", "", "", "", "", truth
    );
    s
}

fn csv(rows: &[ReportRow], truth: f64) -> String {
    let mut s = String::from(
        "format,bits_per_weight,weight_bytes,max_abs_error,rms_error,snr_db,predicted_snr_db,nats_per_word,true_entropy,tokens_per_s\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{:.4},{},{:.6e},{:.6e},{:.3},{:.3},{:.6},{:.6},{:.1}",
            r.scheme.name(),
            r.bits_per_weight,
            r.weight_bytes,
            r.error.max_abs,
            r.error.rms,
            r.error.snr_db,
            r.predicted_snr_db,
            r.cross_entropy,
            truth,
            r.tokens_per_s
        );
    }
    s
}

/// The chapter's figures: the weights' histogram, the rounding error in units of each
/// block's step against the uniform density, SNR by bits, and bits against cross-entropy.
fn charts(
    dir: &Path,
    model: &Gpt,
    rows: &[ReportRow],
    truth: f64,
    snr: &[super::stats::SnrAtBits],
    snr_name: &str,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let projections: Vec<_> = f32_projections(model)
        .into_iter()
        .filter(|p| p.2 % 32 == 0)
        .collect();
    let all: Vec<f32> = projections
        .iter()
        .flat_map(|p| p.3.iter().copied())
        .collect();
    let h = Histogram::of(&all, 81)?;
    let weights = LineChart::new(
        format!("llama-tiny's projection weights ({} values)", all.len()),
        "weight",
        "count (log scale)",
    )
    .log_y()
    .series(histogram_series("weights", &h, 1.0));
    let path = dir.join("weights.svg");
    weights.save_svg(&path)?;
    files.push(path);

    let mut errors = LineChart::new(
        "rounding error in units of the block's step, (x − x')/d",
        "(x − x') / d",
        "density",
    )
    .hline("uniform on [−1/2, 1/2]: density 1", 1.0);
    for f in [Format::Q8_0, Format::Q4_1, Format::Q4_0] {
        let mut e = Vec::new();
        for (_, rows, cols, w) in &projections {
            e.extend(normalized_errors(
                &QMatrix::quantize(f, *rows, *cols, w)?,
                w,
            )?);
        }
        let h = super::stats::Histogram::new(&e, 40, -0.6, 0.6)?;
        let width = (h.hi - h.lo) as f64 / h.counts.len() as f64;
        errors = errors.series(histogram_series(
            f.name(),
            &h,
            1.0 / (e.len() as f64 * width),
        ));
    }
    let path = dir.join("rounding_error.svg");
    errors.save_svg(&path)?;
    files.push(path);

    let bits = LineChart::new(
        format!("absmax rounding of {snr_name}: SNR by bits"),
        "bits",
        "SNR (dB)",
    )
    .series(Series::new(
        "measured",
        snr.iter().map(|r| (r.bits as f64, r.measured_db)).collect(),
    ))
    .series(Series::new(
        "predicted, Δ²/12",
        snr.iter()
            .map(|r| (r.bits as f64, r.predicted_db))
            .collect(),
    ));
    let path = dir.join("snr_by_bits.svg");
    bits.save_svg(&path)?;
    files.push(path);

    let mut ggml: Vec<&ReportRow> = rows
        .iter()
        .filter(|r| matches!(r.scheme, Scheme::Ggml(_)))
        .collect();
    ggml.sort_by(|a, b| a.bits_per_weight.total_cmp(&b.bits_per_weight));
    let ce = LineChart::new(
        "llama-tiny on the toy world: bits per weight against cross-entropy",
        "bits per weight (the projections)",
        "test cross-entropy (nats/word)",
    )
    .series(Series::new(
        "q4_0, q4_1, q8_0, f16, f32",
        ggml.iter()
            .map(|r| (r.bits_per_weight, r.cross_entropy))
            .collect(),
    ))
    .hline(format!("the grammar's true entropy {truth:.3}"), truth);
    let path = dir.join("bits_vs_cross_entropy.svg");
    ce.save_svg(&path)?;
    files.push(path);
    Ok(files)
}

/// A histogram as a line through its bins' centres, counts scaled by `scale`.
fn histogram_series(name: &str, h: &Histogram, scale: f64) -> Series {
    Series::new(
        name,
        h.centers()
            .iter()
            .zip(&h.counts)
            .map(|(&x, &c)| (x as f64, c as f64 * scale))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::tour::END;

    #[test]
    fn the_tour_models_inputs_are_measured() {
        let cfg = crate::gpt::GptConfig::llama_tiny();
        let model = Gpt::init(cfg, 2).unwrap();
        let ids: Vec<u32> = (0..40).map(|i| if i % 7 == 0 { END } else { i }).collect();
        let (max, outliers, features) = activation_outliers(&model, &ids, 6.0).unwrap();
        assert_eq!(features, 2 * 4 * 128);
        // RMSNorm'd inputs with unit gains: |x| ≤ sqrt(C) = 11.3, and far below for random ones
        assert!(max > 0.5 && max < 128f32.sqrt(), "{max}");
        assert!(outliers <= features);
    }
}
