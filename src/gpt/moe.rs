//! DeepSeekMoE (DeepSeek-V3 report, eqs. 12-20), forward and backward.
//!
//! For the normalised hidden state `u_t` of a token, with `N_s` shared and `N_r` routed
//! SwiGLU experts:
//!
//! ```text
//! s_i,t  = sigmoid(u_tᵀ e_i)                                  affinity of routed expert i
//! chosen = the K_r largest s_i,t + b_i                        b_i: for choosing only
//! g_i,t  = s_i,t / sum_{j chosen} s_j,t  (i chosen), else 0   gates from the plain scores
//! h'_t   = u_t + sum_i FFN_i^(s)(u_t) + sum_i g_i,t FFN_i^(r)(u_t)
//! ```
//!
//! (The residual `u_t +` is the block's.) Group-limited routing first keeps the
//! `topk_group` groups whose two best `s + b` sum highest. The gates are multiplied by
//! `routed_scaling_factor`.
//!
//! Auxiliary-loss-free balancing moves `b` outside backpropagation: after each step,
//! `b_i <- b_i + γ sign(mean load - load_i)` ([`MoeParams::update_bias`]): an overloaded
//! expert's bias falls, so it is chosen less, while its gate (from `s`, not `s + b`) is
//! untouched. The complementary sequence-wise balance loss is
//! `L_bal = α sum_i f_i P_i`, `f_i = N_r / (K_r T) sum_t 1(i chosen at t)`,
//! `P_i = (1/T) sum_t s_i,t / sum_j s_j,t` ([`seq_balance_loss`]).
//!
//! The backward reaches the router only through the chosen experts' gates (and the
//! balance loss): top-K is piecewise constant, so away from ties it has no gradient.

use super::config::MoeConfig;
use super::linear::{mat, mat_mut, matmul, Threads};
use super::mlp::{swiglu_backward, swiglu_forward};
use super::params::{Expert, MoeParams};

/// The normalisation's guard against a zero sum, as transformers writes it.
const GATE_EPS: f32 = 1e-20;

// ANCHOR: route
/// DeepSeek-V3's choice for one token: the sigmoid scores `s` (`N_r`) and the bias `b`
/// give the chosen experts (`K_r` of them, best first) and their gates.
pub fn route(s: &[f32], bias: &[f32], m: &MoeConfig) -> (Vec<usize>, Vec<f32>) {
    let choice: Vec<f32> = s.iter().zip(bias).map(|(s, b)| s + b).collect();
    // group-limited routing: a group's score is the sum of its two best choice scores
    let per_group = m.n_routed / m.n_group;
    let mut allowed = vec![true; m.n_routed];
    if m.topk_group < m.n_group {
        let group_score = |g: usize| {
            let mut v = choice[g * per_group..(g + 1) * per_group].to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            v.iter().take(2).sum::<f32>()
        };
        let mut groups: Vec<usize> = (0..m.n_group).collect();
        groups.sort_by(|&a, &b| group_score(b).total_cmp(&group_score(a)).then(a.cmp(&b)));
        allowed.fill(false);
        for &g in &groups[..m.topk_group] {
            allowed[g * per_group..(g + 1) * per_group].fill(true);
        }
    }
    let mut order: Vec<usize> = (0..m.n_routed).filter(|&i| allowed[i]).collect();
    order.sort_by(|&a, &b| choice[b].total_cmp(&choice[a]).then(a.cmp(&b)));
    order.truncate(m.top_k);
    // the gates come from the plain scores, normalised over the chosen experts, scaled
    let mut gates: Vec<f32> = order.iter().map(|&i| s[i]).collect();
    if m.norm_topk_prob {
        let sum: f32 = gates.iter().sum::<f32>() + GATE_EPS;
        gates.iter_mut().for_each(|g| *g /= sum);
    }
    gates.iter_mut().for_each(|g| *g *= m.routed_scaling_factor);
    (order, gates)
}
// ANCHOR_END: route

/// What one expert's forward keeps: the tokens routed to it (row of the batch, and which
/// of the token's `K_r` slots), their inputs, the SwiGLU's pre-activations and hidden
/// values, and the expert's outputs before the gate.
#[derive(Clone, Debug, Default)]
pub struct ExpertActs {
    pub rows: Vec<(usize, usize)>,
    pub x: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub h: Vec<f32>,
    pub y: Vec<f32>,
}

/// What the MoE forward keeps for its backward and for balancing.
#[derive(Clone, Debug, Default)]
pub struct MoeActs {
    /// `s`, `(n, N_r)`.
    pub scores: Vec<f32>,
    /// The chosen experts, best first, and their gates, `(n, K_r)`.
    pub ids: Vec<usize>,
    pub gates: Vec<f32>,
    pub routed: Vec<ExpertActs>,
    pub shared: ExpertActs,
    /// Tokens each routed expert received, `(N_r,)`.
    pub load: Vec<usize>,
    /// The sequence-wise balance loss of this forward (0 when `α` is 0).
    pub balance_loss: f32,
}

/// `y = down(silu(gate x) * up x)` for the rows of `x`, keeping what the backward needs.
fn expert_forward(e: &Expert, acts: &mut ExpertActs) {
    let (f, c) = (e.gate_proj.d_out, e.gate_proj.d_in);
    let m = acts.x.len() / c;
    acts.a.resize(m * f, 0.0);
    acts.b.resize(m * f, 0.0);
    acts.h.resize(m * f, 0.0);
    acts.y.resize(m * c, 0.0);
    if m == 0 {
        return;
    }
    e.gate_proj.forward(&mut acts.a, &acts.x);
    e.up_proj.forward(&mut acts.b, &acts.x);
    swiglu_forward(&mut acts.h, &acts.a, &acts.b);
    e.down_proj.forward(&mut acts.y, &acts.h);
}

/// Backward of [`expert_forward`] given `dy`: the input's gradient into `dx` (rows of
/// `acts.x`), the weights' into `g`.
fn expert_backward(e: &Expert, g: &mut Expert, acts: &ExpertActs, dx: &mut [f32], dy: &[f32]) {
    if acts.x.is_empty() {
        return;
    }
    let mut dh = vec![0.0; acts.h.len()];
    e.down_proj.backward(&mut dh, &mut g.down_proj, dy, &acts.h);
    let (mut da, mut db) = (vec![0.0; acts.a.len()], vec![0.0; acts.b.len()]);
    swiglu_backward(&mut da, &mut db, &dh, &acts.a, &acts.b);
    e.gate_proj.backward(dx, &mut g.gate_proj, &da, &acts.x);
    e.up_proj.backward(dx, &mut g.up_proj, &db, &acts.x);
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

// ANCHOR: moe_forward
/// DeepSeekMoE on the `n = b t` rows of `x` (`(n, C)`, normalised), into `out`
/// (overwritten), keeping what the backward needs in `acts`.
pub fn moe_forward(
    p: &MoeParams,
    m: &MoeConfig,
    acts: &mut MoeActs,
    out: &mut [f32],
    x: &[f32],
    t: usize,
) {
    let (e_n, k, c) = (m.n_routed, m.top_k, p.router.shape[1]);
    let n = x.len() / c;
    // affinities s = sigmoid(x e_i)
    acts.scores.resize(n * e_n, 0.0);
    matmul(
        1.0,
        &mat(x, n, c),
        &mat(&p.router, e_n, c).t(),
        0.0,
        &mut mat_mut(&mut acts.scores, n, e_n),
        Threads::All,
    );
    acts.scores.iter_mut().for_each(|u| *u = sigmoid(*u));
    // each token's experts and gates; each expert's tokens
    acts.ids.resize(n * k, 0);
    acts.gates.resize(n * k, 0.0);
    acts.routed.resize_with(e_n, ExpertActs::default);
    acts.routed.iter_mut().for_each(|r| r.rows.clear());
    for i in 0..n {
        let (ids, gates) = route(&acts.scores[i * e_n..][..e_n], &p.bias, m);
        for (j, (&e, g)) in ids.iter().zip(gates).enumerate() {
            acts.ids[i * k + j] = e;
            acts.gates[i * k + j] = g;
            acts.routed[e].rows.push((i, j));
        }
    }
    acts.load = acts.routed.iter().map(|r| r.rows.len()).collect();
    // every routed expert on its own tokens; out = sum of gated outputs
    out.fill(0.0);
    for (e, r) in p.experts.iter().zip(&mut acts.routed) {
        r.x.clear();
        for &(i, _) in &r.rows {
            r.x.extend_from_slice(&x[i * c..][..c]);
        }
        expert_forward(e, r);
        for (row, &(i, j)) in r.y.chunks_exact(c).zip(&r.rows) {
            let g = acts.gates[i * k + j];
            for (o, y) in out[i * c..][..c].iter_mut().zip(row) {
                *o += g * y;
            }
        }
    }
    // the shared experts see every token, ungated
    if let Some(e) = &p.shared {
        let sh = &mut acts.shared;
        sh.x.clear();
        sh.x.extend_from_slice(x);
        expert_forward(e, sh);
        out.iter_mut().zip(&sh.y).for_each(|(o, y)| *o += y);
    }
    acts.balance_loss = if m.seq_aux_alpha > 0.0 {
        seq_balance_loss(&acts.scores, &acts.ids, m, t).0
    } else {
        0.0
    };
}
// ANCHOR_END: moe_forward

// ANCHOR: balance_loss
/// The sequence-wise balance loss `α sum_i f_i P_i`, averaged over the `n / t` sequences,
/// and its gradient with respect to the scores `s` (`(n, N_r)`; `f` counts choices, so it
/// has none).
pub fn seq_balance_loss(scores: &[f32], ids: &[usize], m: &MoeConfig, t: usize) -> (f32, Vec<f32>) {
    let (e_n, k) = (m.n_routed, m.top_k);
    let n = scores.len() / e_n;
    let seqs = n / t;
    let mut loss = 0.0;
    let mut d_s = vec![0.0; scores.len()];
    for b in 0..seqs {
        let mut f = vec![0.0f32; e_n];
        for &e in &ids[b * t * k..(b + 1) * t * k] {
            f[e] += e_n as f32 / (k * t) as f32;
        }
        for i in b * t..(b + 1) * t {
            let s = &scores[i * e_n..][..e_n];
            let sum: f32 = s.iter().sum();
            // L_b = α sum_e f_e (1/T) sum_t s_e / sum_j s_j; d/ds_j of s_e / S = (δ_ej - s_e / S) / S
            let weighted: f32 = s.iter().zip(&f).map(|(s, f)| f * s).sum::<f32>() / sum;
            loss += m.seq_aux_alpha * weighted / (t * seqs) as f32;
            let coef = m.seq_aux_alpha / (t * seqs) as f32 / sum;
            for (d, fe) in d_s[i * e_n..][..e_n].iter_mut().zip(&f) {
                *d = coef * (fe - weighted);
            }
        }
    }
    (loss, d_s)
}
// ANCHOR_END: balance_loss

// ANCHOR: gates_backward
/// The gradient of the chosen experts' scores `s_j` from their gates' gradient `dg_j`.
/// With normalisation, `g_j = c s_j / S` (`S` the chosen scores' sum, `c` the scaling
/// factor), and `∂g_j/∂s_l = (c δ_jl - g_j) / S`, so `ds_l = (c dg_l - sum_j dg_j g_j) / S`;
/// without it, `g_j = c s_j` and `ds_l = c dg_l`.
pub fn gates_backward(chosen: &[f32], gates: &[f32], d_gates: &[f32], m: &MoeConfig) -> Vec<f32> {
    let c = m.routed_scaling_factor;
    if !m.norm_topk_prob {
        return d_gates.iter().map(|d| c * d).collect();
    }
    let sum: f32 = chosen.iter().sum::<f32>() + GATE_EPS;
    let dot: f32 = d_gates.iter().zip(gates).map(|(d, g)| d * g).sum();
    d_gates.iter().map(|d| (c * d - dot) / sum).collect()
}
// ANCHOR_END: gates_backward

// ANCHOR: moe_backward
/// Backward of [`moe_forward`], given `d_out`: adds the input's gradient into `dx` and the
/// parameters' into `g`. A gate `g_j = c s_j / S` (`S` the chosen scores' sum) passes
/// `∂g_j/∂s_l = c (δ_jl - g_j / c) / S` to the chosen scores, and the sigmoid
/// `s (1 - s)` to the router.
#[allow(clippy::too_many_arguments)]
pub fn moe_backward(
    p: &MoeParams,
    g: &mut MoeParams,
    m: &MoeConfig,
    acts: &MoeActs,
    dx: &mut [f32],
    d_out: &[f32],
    x: &[f32],
    t: usize,
) {
    let (e_n, k, c) = (m.n_routed, m.top_k, p.router.shape[1]);
    let n = x.len() / c;
    if let (Some(e), Some(ge)) = (&p.shared, &mut g.shared) {
        expert_backward(e, ge, &acts.shared, dx, d_out);
    }
    // each routed expert: its output's gradient is the gate times d_out; the gate's is
    // d_out . the expert's output
    let mut d_gates = vec![0.0f32; n * k];
    for ((e, ge), r) in p.experts.iter().zip(&mut g.experts).zip(&acts.routed) {
        if r.rows.is_empty() {
            continue;
        }
        let mut dy = vec![0.0; r.y.len()];
        for ((dy, y), &(i, j)) in dy.chunks_exact_mut(c).zip(r.y.chunks_exact(c)).zip(&r.rows) {
            let (gate, d) = (acts.gates[i * k + j], &d_out[i * c..][..c]);
            dy.iter_mut().zip(d).for_each(|(dy, d)| *dy = gate * d);
            d_gates[i * k + j] = super::linear::dot(d, y);
        }
        let mut dxe = vec![0.0; r.x.len()];
        expert_backward(e, ge, r, &mut dxe, &dy);
        for (row, &(i, _)) in dxe.chunks_exact(c).zip(&r.rows) {
            dx[i * c..][..c]
                .iter_mut()
                .zip(row)
                .for_each(|(d, v)| *d += v);
        }
    }
    // gates -> scores: through the normalisation over the chosen experts
    let mut d_s = if m.seq_aux_alpha > 0.0 {
        seq_balance_loss(&acts.scores, &acts.ids, m, t).1
    } else {
        vec![0.0; n * e_n]
    };
    for i in 0..n {
        let (ids, gates, dg) = (
            &acts.ids[i * k..][..k],
            &acts.gates[i * k..][..k],
            &d_gates[i * k..][..k],
        );
        let chosen: Vec<f32> = ids.iter().map(|&e| acts.scores[i * e_n + e]).collect();
        let ds = &mut d_s[i * e_n..][..e_n];
        for (&e, d) in ids.iter().zip(gates_backward(&chosen, gates, dg, m)) {
            ds[e] += d;
        }
    }
    // scores -> router logits -> router and input
    let mut du = d_s;
    du.iter_mut()
        .zip(&acts.scores)
        .for_each(|(d, s)| *d *= s * (1.0 - s));
    matmul(
        1.0,
        &mat(&du, n, e_n),
        &mat(&p.router, e_n, c),
        1.0,
        &mut mat_mut(dx, n, c),
        Threads::All,
    );
    if p.router.trainable {
        matmul(
            1.0,
            &mat(&du, n, e_n).t(),
            &mat(x, n, c),
            1.0,
            &mut mat_mut(&mut g.router, e_n, c),
            Threads::All,
        );
    }
}
// ANCHOR_END: moe_backward

// ANCHOR: update_bias
impl MoeParams {
    /// Auxiliary-loss-free balancing after a step: `b_i <- b_i + γ sign(mean load - load_i)`
    /// for the tokens each expert received (`load`, from the step's forward).
    pub fn update_bias(&mut self, load: &[usize], gamma: f32) {
        let mean = load.iter().sum::<usize>() as f32 / load.len().max(1) as f32;
        for (b, &l) in self.bias.iter_mut().zip(load) {
            let diff = mean - l as f32;
            if diff != 0.0 {
                *b += gamma * diff.signum();
            }
        }
    }
}
// ANCHOR_END: update_bias

/// The smallest gap, over the tokens of `scores` (`(n, N_r)`), between the last chosen
/// and the first unchosen expert's `s + b` (and between the last kept and the first
/// dropped group's score, with group-limited routing): how far the choice is from a tie.
/// Finite-difference checks need it well above the step's effect.
pub fn selection_margin(scores: &[f32], bias: &[f32], m: &MoeConfig) -> f32 {
    let per_group = m.n_routed / m.n_group;
    let mut worst = f32::INFINITY;
    for s in scores.chunks_exact(m.n_routed) {
        let choice: Vec<f32> = s.iter().zip(bias).map(|(s, b)| s + b).collect();
        let mut allowed: Vec<usize> = (0..m.n_routed).collect();
        if m.topk_group < m.n_group {
            let mut groups: Vec<(f32, usize)> = (0..m.n_group)
                .map(|g| {
                    let mut v = choice[g * per_group..(g + 1) * per_group].to_vec();
                    v.sort_by(|a, b| b.total_cmp(a));
                    (v.iter().take(2).sum::<f32>(), g)
                })
                .collect();
            groups.sort_by(|a, b| b.0.total_cmp(&a.0));
            worst = worst.min(groups[m.topk_group - 1].0 - groups[m.topk_group].0);
            let kept: Vec<usize> = groups[..m.topk_group].iter().map(|g| g.1).collect();
            allowed.retain(|i| kept.contains(&(i / per_group)));
        }
        let mut v: Vec<f32> = allowed.iter().map(|&i| choice[i]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        if v.len() > m.top_k {
            worst = worst.min(v[m.top_k - 1] - v[m.top_k]);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MoeConfig {
        MoeConfig {
            n_routed: 4,
            n_shared: 1,
            top_k: 2,
            d_expert: 3,
            n_group: 1,
            topk_group: 1,
            norm_topk_prob: true,
            routed_scaling_factor: 1.0,
            first_dense: 0,
            bias_update_speed: 0.001,
            seq_aux_alpha: 0.0,
        }
    }

    #[test]
    fn the_bias_chooses_but_does_not_weigh() {
        let m = cfg();
        let s = [0.9, 0.8, 0.3, 0.2];
        let (ids, gates) = route(&s, &[0.0; 4], &m);
        assert_eq!(ids, [0, 1]);
        assert!((gates[0] - 0.9 / 1.7).abs() < 1e-6 && (gates[1] - 0.8 / 1.7).abs() < 1e-6);
        // a bias of +0.7 on expert 3 makes it chosen, and its gate is still from s = 0.2
        let (ids, gates) = route(&s, &[0.0, 0.0, 0.0, 0.7], &m);
        assert_eq!(ids, [0, 3]);
        assert!((gates[1] - 0.2 / 1.1).abs() < 1e-6, "{gates:?}");
        // without normalising, the gates are the scores times the scaling factor
        let m2 = MoeConfig {
            norm_topk_prob: false,
            routed_scaling_factor: 2.5,
            ..m
        };
        let (_, gates) = route(&s, &[0.0; 4], &m2);
        assert!((gates[0] - 2.25).abs() < 1e-6 && (gates[1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn groups_limit_the_choice() {
        // two groups of two: group 1 (experts 2, 3) sums 0.7 + 0.6 > group 0's 0.9 + 0.1,
        // so expert 0, the best alone, is not chosen
        let m = MoeConfig {
            n_group: 2,
            topk_group: 1,
            ..cfg()
        };
        let (ids, _) = route(&[0.9, 0.1, 0.7, 0.6], &[0.0; 4], &m);
        assert_eq!(ids, [2, 3]);
        assert!((selection_margin(&[0.9, 0.1, 0.7, 0.6], &[0.0; 4], &m) - 0.3).abs() < 1e-6);
    }

    #[test]
    fn the_bias_moves_against_the_load() {
        let mut p = MoeParams::zeros(&cfg(), 2);
        // loads 5, 3, 0, 0 (mean 2): the two busy experts fall, the idle ones rise
        p.update_bias(&[5, 3, 0, 0], 0.001);
        assert_eq!(p.bias.data, [-0.001, -0.001, 0.001, 0.001]);
        p.update_bias(&[2, 2, 2, 2], 0.001);
        assert_eq!(
            p.bias.data,
            [-0.001, -0.001, 0.001, 0.001],
            "balanced: no change"
        );
    }
}
