//! Each loss plugin's per-pair value and gradient against a closed-form Rust computation, for both
//! weight placements.

use candle_core::{DType, Device, Tensor, Var};
use trainer::recipe::{HookSource, LossSpec, WeightPlacement};
use trainer::script::{HookKind, ScriptHost};
use trainer::script::{LossInputs, LossOutput};

const B: usize = 4;

/// One pair's inputs.
#[derive(Clone, Copy)]
struct Pair {
    c: f64,
    r: f64,
    rc: f64,
    rr: f64,
    tc: f64,
    tr: f64,
    w: f64,
}

/// Value and derivatives (d/dc, d/dr) of one pair's loss.
type Closed = fn(&Pair, &LossSpec) -> (f64, f64, f64);

fn pairs() -> [Pair; B] {
    [
        // chosen improves, rejected drops: large positive margin
        Pair {
            c: -10.0,
            r: -30.0,
            rc: -14.0,
            rr: -20.0,
            tc: 8.0,
            tr: 12.0,
            w: 1.0,
        },
        // chosen drops below the reference (DPOP penalty active)
        Pair {
            c: -25.0,
            r: -18.0,
            rc: -21.0,
            rr: -19.5,
            tc: 15.0,
            tr: 9.0,
            w: 1.7,
        },
        // small negative margin
        Pair {
            c: -7.5,
            r: -6.0,
            rc: -7.0,
            rr: -6.2,
            tc: 5.0,
            tr: 4.0,
            w: 0.6,
        },
        // long responses
        Pair {
            c: -60.0,
            r: -75.0,
            rc: -62.0,
            rr: -70.0,
            tc: 40.0,
            tr: 33.0,
            w: 2.25,
        },
    ]
}

fn log_sig(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

fn sig(x: f64) -> f64 {
    log_sig(x).exp()
}

fn inside(s: &LossSpec) -> bool {
    s.placement == WeightPlacement::Inside
}

fn delta(p: &Pair) -> f64 {
    (p.c - p.rc) - (p.r - p.rr)
}

/// A loss of the form f(m) with m = β·Δ, weight inside (f(w·m)) or outside (w·f(m)).
fn margin_loss(p: &Pair, s: &LossSpec, f: impl Fn(f64) -> (f64, f64)) -> (f64, f64, f64) {
    let m = s.beta * delta(p);
    let (l, dl_dm) = if inside(s) {
        let (v, d) = f(p.w * m);
        (v, d * p.w)
    } else {
        let (v, d) = f(m);
        (p.w * v, p.w * d)
    };
    (l, dl_dm * s.beta, -dl_dm * s.beta)
}

fn dpo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    margin_loss(p, s, |m| (-log_sig(m), -sig(-m)))
}

fn cdpo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let e = s.label_smoothing;
    margin_loss(p, s, |m| {
        (
            -(1.0 - e) * log_sig(m) - e * log_sig(-m),
            -(1.0 - e) * sig(-m) + e * sig(m),
        )
    })
}

fn robust(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let e = s.label_smoothing;
    let k = 1.0 - 2.0 * e;
    margin_loss(p, s, |m| {
        (
            (-(1.0 - e) * log_sig(m) + e * log_sig(-m)) / k,
            (-(1.0 - e) * sig(-m) - e * sig(m)) / k,
        )
    })
}

fn hinge(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    margin_loss(p, s, |m| {
        if 1.0 - m > 0.0 {
            (1.0 - m, -1.0)
        } else {
            (0.0, 0.0)
        }
    })
}

fn ipo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let h = (p.c - p.rc) / p.tc - (p.r - p.rr) / p.tr;
    let t = 1.0 / (2.0 * s.beta);
    let (l, dl_dh) = if inside(s) {
        ((p.w * h - t).powi(2), 2.0 * (p.w * h - t) * p.w)
    } else {
        (p.w * (h - t).powi(2), p.w * 2.0 * (h - t))
    };
    (l, dl_dh / p.tc, -dl_dh / p.tr)
}

fn simpo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let d = p.c / p.tc - p.r / p.tr;
    let (l, dl_dd) = if inside(s) {
        let x = p.w * s.beta * d - s.gamma;
        (-log_sig(x), -sig(-x) * p.w * s.beta)
    } else {
        let x = s.beta * d - s.gamma;
        (-p.w * log_sig(x), -p.w * sig(-x) * s.beta)
    };
    (l, dl_dd / p.tc, -dl_dd / p.tr)
}

fn dpop(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let active = p.rc - p.c > 0.0;
    let pen = if active { p.rc - p.c } else { 0.0 };
    let m = s.beta * (delta(p) - s.lambda * pen);
    let dm_dc = s.beta * (1.0 + if active { s.lambda } else { 0.0 });
    let dm_dr = -s.beta;
    let (l, dl_dm) = if inside(s) {
        (-log_sig(p.w * m), -sig(-p.w * m) * p.w)
    } else {
        (-p.w * log_sig(m), -p.w * sig(-m))
    };
    (l, dl_dm * dm_dc, dl_dm * dm_dr)
}

fn orpo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let (aw, al) = (p.c / p.tc, p.r / p.tr);
    let lo = (aw - al) - ((1.0 - aw.exp()).ln() - (1.0 - al.exp()).ln());
    let (dlo_daw, dlo_dal) = (1.0 / (1.0 - aw.exp()), -1.0 / (1.0 - al.exp()));
    let (odds, d_odds) = if inside(s) {
        (-s.beta * log_sig(p.w * lo), -s.beta * sig(-p.w * lo) * p.w)
    } else {
        (-s.beta * log_sig(lo) * p.w, -s.beta * sig(-lo) * p.w)
    };
    let l = s.alpha * (-aw) + odds;
    (
        l,
        (-s.alpha + d_odds * dlo_daw) / p.tc,
        d_odds * dlo_dal / p.tr,
    )
}

fn rpo(p: &Pair, s: &LossSpec) -> (f64, f64, f64) {
    let (l, dc, dr) = dpo(p, s);
    (l - s.alpha * p.c / p.tc, dc - s.alpha / p.tc, dr)
}

fn spec(placement: WeightPlacement) -> LossSpec {
    LossSpec {
        beta: 0.3,
        gamma: 0.7,
        lambda: 5.0,
        label_smoothing: 0.15,
        alpha: 0.8,
        placement,
        ..crate::common::fixture_loss()
    }
}

/// Runs plugin `name` on `pairs()` and compares value and gradient with `closed`.
fn assert_plugin_matches(name: &str, closed: Closed) {
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook =
        trainer::script::from_source(&mut host, HookKind::Loss, &HookSource::Plugin(name.into()))
            .unwrap();
    let ps = pairs();
    let col = |f: fn(&Pair) -> f64| {
        Tensor::new(ps.iter().map(f).collect::<Vec<f64>>(), &Device::Cpu).unwrap()
    };
    for placement in [WeightPlacement::Inside, WeightPlacement::Outside] {
        let s = spec(placement);
        let c = Var::from_tensor(&col(|p| p.c)).unwrap();
        let r = Var::from_tensor(&col(|p| p.r)).unwrap();
        let inputs = LossInputs {
            chosen_logps: c.as_tensor().clone(),
            rejected_logps: r.as_tensor().clone(),
            ref_chosen_logps: col(|p| p.rc),
            ref_rejected_logps: col(|p| p.rr),
            chosen_tokens: col(|p| p.tc),
            rejected_tokens: col(|p| p.tr),
            weight: col(|p| p.w),
            chosen_wpo: col(|_| -0.5),
            rejected_wpo: col(|_| -0.7),
        };
        let LossOutput::PerPair(per_pair) =
            host.call_loss(hook, &inputs, &s.hook_params()).unwrap()
        else {
            panic!("{name}: expected per-pair losses");
        };
        let values = per_pair
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let grads = per_pair.mean_all().unwrap().backward().unwrap();
        let gc = grads.get(c.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        let gr = grads.get(r.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        for (i, p) in ps.iter().enumerate() {
            let (l, dc, dr) = closed(p, &s);
            let tag = format!("{name} [{}] pair {i}", placement.as_str());
            assert!(
                (values[i] - l).abs() < 1e-9 * l.abs().max(1.0),
                "{tag}: value {} vs {l}",
                values[i]
            );
            assert!(
                (gc[i] - dc / B as f64).abs() < 1e-9,
                "{tag}: d/dchosen {} vs {}",
                gc[i],
                dc / B as f64
            );
            assert!(
                (gr[i] - dr / B as f64).abs() < 1e-9,
                "{tag}: d/drejected {} vs {}",
                gr[i],
                dr / B as f64
            );
        }
    }
}

#[test]
fn dpo_matches_closed_form() {
    assert_plugin_matches("dpo", dpo);
}

#[test]
fn cdpo_matches_closed_form() {
    assert_plugin_matches("cdpo", cdpo);
}

#[test]
fn robust_matches_closed_form() {
    assert_plugin_matches("robust", robust);
}

#[test]
fn hinge_matches_closed_form() {
    assert_plugin_matches("hinge", hinge);
}

#[test]
fn ipo_matches_closed_form() {
    assert_plugin_matches("ipo", ipo);
}

#[test]
fn simpo_matches_closed_form() {
    assert_plugin_matches("simpo", simpo);
}

#[test]
fn dpop_matches_closed_form() {
    assert_plugin_matches("dpop", dpop);
}

#[test]
fn orpo_matches_closed_form() {
    assert_plugin_matches("orpo", orpo);
}

#[test]
fn rpo_matches_closed_form() {
    assert_plugin_matches("rpo", rpo);
}

#[test]
fn log_sigmoid_gradient_is_one_half_beta_at_zero_margin() {
    // ../shared/fixtures/smollm2_dpo_reference.json: the model is its own reference, so every
    // margin is exactly 0 and DPO's gradient must be −β/2 per pair, not 0 (a kink artefact).
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook =
        trainer::script::from_source(&mut host, HookKind::Loss, &HookSource::Plugin("dpo".into()))
            .unwrap();
    let z = Tensor::new(&[-12.0f64, -28.0], &Device::Cpu).unwrap();
    let c = Var::from_tensor(&z).unwrap();
    let ones = z.ones_like().unwrap();
    let inputs = LossInputs {
        chosen_logps: c.as_tensor().clone(),
        rejected_logps: z.clone(),
        ref_chosen_logps: z.clone(),
        ref_rejected_logps: z.clone(),
        chosen_tokens: ones.clone(),
        rejected_tokens: ones.clone(),
        weight: ones.clone(),
        chosen_wpo: ones.clone(),
        rejected_wpo: ones,
    };
    let s = crate::common::fixture_loss();
    let LossOutput::PerPair(l) = host.call_loss(hook, &inputs, &s.hook_params()).unwrap() else {
        panic!()
    };
    let g = l.sum_all().unwrap().backward().unwrap();
    let gc = g.get(c.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(gc, vec![-0.05, -0.05]);
}
