//! What the reference tests (`llama_reference`, `deepseek_reference`) share.

/// max |ours - theirs| / max |theirs|
pub fn rel_max_diff(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}
