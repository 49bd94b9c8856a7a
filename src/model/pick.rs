//! Picking one token from one row of logits: greedy, or temperature / top-k / top-p sampling
//! over the vocabulary in descending-logit order, that order found by a linear-time radix sort.

use crate::rng::Rng;

/// How to pick tokens, and how many (generation stops at `max_new_tokens` or a `stop` string).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 means no top-k cut.
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens,
            stop: Vec::new(),
        }
    }
}

/// Below this many logits a comparison sort is as fast as the radix sort (same order either way).
const RADIX_FROM: usize = 512;

/// Greedy (first maximum) or sampled token from one row of logits.
///
/// Sampling walks the tokens from the most to the least likely (ties: the lower id first),
/// keeps the first `top_k` (0: all), normalises their probabilities at `temperature`, keeps the
/// shortest prefix whose mass reaches `top_p`, and returns the token whose cumulative mass first
/// exceeds one uniform draw from `rng`.
pub fn pick_token(logits: &[f32], params: &SamplingParams, rng: &mut Rng) -> u32 {
    if params.temperature <= 0.0 {
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut order = descending_order(logits);
    if params.top_k > 0 {
        order.truncate(params.top_k);
    }
    let max = logits[order[0] as usize] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i as usize] as f64 - max) / params.temperature).exp())
        .collect();
    normalise(&mut probs);
    if params.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= params.top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        normalise(&mut probs);
    }
    let u = rng.next_f64();
    let mut cum = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if u < cum {
            return order[i];
        }
    }
    order[probs.len() - 1]
}

/// Divides by the sum, summed in slice order.
fn normalise(probs: &mut [f64]) {
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
}

/// Token ids by descending logit, equal logits by ascending id: the order of
/// `sort_by(|a, b| logits[b].total_cmp(&logits[a]).then(a.cmp(b)))`, found for a large
/// vocabulary by a stable least-significant-digit radix sort (four byte passes, a pass skipped
/// when every key shares its byte) in time linear in the vocabulary.
pub(crate) fn descending_order(logits: &[f32]) -> Vec<u32> {
    let n = logits.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    if n < RADIX_FROM {
        order.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        return order;
    }
    let keys: Vec<u32> = logits.iter().map(|&x| descending_key(x)).collect();
    let mut counts = [[0u32; 256]; 4];
    for &k in &keys {
        for (d, count) in counts.iter_mut().enumerate() {
            count[byte(k, d)] += 1;
        }
    }
    let mut scratch = vec![0u32; n];
    for (d, count) in counts.iter().enumerate() {
        if count.iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut next = [0u32; 256];
        let mut at = 0;
        for (slot, &c) in next.iter_mut().zip(count) {
            *slot = at;
            at += c;
        }
        for &i in &order {
            let b = byte(keys[i as usize], d);
            scratch[next[b] as usize] = i;
            next[b] += 1;
        }
        std::mem::swap(&mut order, &mut scratch);
    }
    order
}

fn byte(key: u32, d: usize) -> usize {
    ((key >> (8 * d)) & 0xff) as usize
}

/// A key whose ascending unsigned order is `f32::total_cmp`'s descending order.
fn descending_key(x: f32) -> u32 {
    let bits = x.to_bits();
    let ascending = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    !ascending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison_order(logits: &[f32]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        order
    }

    fn sampled(temperature: f64, top_p: f64, top_k: usize) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            max_new_tokens: 1,
            stop: Vec::new(),
        }
    }

    /// Logits with many exact ties, both zeros, infinities and a spread of magnitudes.
    fn awkward_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| match rng.below(10) {
                0 => 0.0,
                1 => -0.0,
                2 => f32::NEG_INFINITY,
                3 => (rng.below(5) as f32) - 2.0,
                4 => f32::INFINITY,
                _ => (rng.normal() * 8.0) as f32,
            })
            .collect()
    }

    #[test]
    fn radix_order_equals_the_comparison_sort_on_ties_signed_zeros_and_infinities() {
        for (n, seed) in [(512, 1), (4_099, 2), (49_152, 3)] {
            let logits = awkward_logits(n, seed);
            assert_eq!(
                descending_order(&logits),
                comparison_order(&logits),
                "n {n}"
            );
        }
    }

    #[test]
    fn radix_order_skips_shared_bytes_and_still_sorts() {
        // Every key shares its top bytes (logits in [1, 2)), so those passes are skipped.
        let logits: Vec<f32> = (0..2_000)
            .map(|i| 1.0 + ((i * 7919) % 2_000) as f32 / 4_096.0)
            .collect();
        assert_eq!(descending_order(&logits), comparison_order(&logits));
        let equal = vec![0.5f32; 1_000];
        assert_eq!(descending_order(&equal), (0..1_000).collect::<Vec<u32>>());
    }

    #[test]
    fn sampling_follows_the_probabilities_and_respects_top_k_and_top_p() {
        // Softmax of [ln 6, ln 3, ln 1, -inf ...] = 0.6, 0.3, 0.1 over a vocabulary past the radix
        // threshold; 20,000 draws put each within 0.015 of its probability (about 4 SE).
        let mut logits = vec![f32::NEG_INFINITY; 1_000];
        logits[700] = 6f32.ln();
        logits[3] = 3f32.ln();
        logits[512] = 0.0;
        let mut rng = Rng::new(9);
        let draws = 20_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            *counts
                .entry(pick_token(&logits, &sampled(1.0, 1.0, 0), &mut rng))
                .or_insert(0usize) += 1;
        }
        for (token, p) in [(700u32, 0.6), (3, 0.3), (512, 0.1)] {
            let share = counts[&token] as f64 / draws as f64;
            assert!((share - p).abs() < 0.015, "token {token}: {share} vs {p}");
        }
        for _ in 0..200 {
            assert_eq!(pick_token(&logits, &sampled(1.0, 1.0, 1), &mut rng), 700);
            assert_ne!(pick_token(&logits, &sampled(1.0, 0.85, 0), &mut rng), 512);
        }
        assert_eq!(pick_token(&logits, &sampled(0.0, 1.0, 0), &mut rng), 700);
    }
}
