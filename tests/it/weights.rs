//! The plug-and-play weight formula (arXiv 2412.20996) on a table of (Pc, Pe, N, α, ε).

use serde::Serialize;
use trainer::recipe::{HookParam, HookSource};
use trainer::script::{HookKind, ScriptHost};

#[derive(Serialize)]
struct Stats {
    n: i64,
    pc: i64,
    pe: i64,
    invalid: i64,
    answers: Vec<String>,
}

fn weight_of(plugin: &str, pc: i64, pe: i64, n: i64, alpha: f64, eps: f64) -> f64 {
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook = trainer::script::from_source(
        &mut host,
        HookKind::Weight,
        &HookSource::Plugin(plugin.into()),
    )
    .unwrap();
    let stats = Stats {
        n,
        pc,
        pe,
        invalid: 0,
        answers: vec![],
    };
    let params = [
        ("alpha".to_string(), HookParam::Float(alpha)),
        ("eps".to_string(), HookParam::Float(eps)),
    ];
    host.call_weight(hook, &stats, &params).unwrap()
}

#[test]
fn plug_and_play_weight_follows_the_paper_on_a_table() {
    // (Pc, Pe, N, α, ε, w) worked by hand from
    // w = 1 + α·Pe/N if Pc = 0, else max(1, 1 + α·Pe/(Pc+ε)·(1/N)).
    let table = [
        (4, 0, 4, 1.0, 0.01, 1.0),
        (0, 4, 4, 1.0, 0.01, 2.0),
        (0, 8, 8, 0.5, 0.01, 1.5),
        (0, 3, 4, 1.0, 0.01, 1.75),
        (1, 3, 4, 1.0, 0.0, 1.75),
        (1, 3, 4, 1.0, 0.5, 1.5),
        (2, 2, 4, 2.0, 0.0, 1.5),
        (3, 1, 4, 1.0, 1.0, 1.0625),
        (7, 1, 8, 0.0, 0.01, 1.0),
        (1, 7, 8, 3.0, 0.75, 1.0 + 3.0 * 7.0 / 1.75 / 8.0),
    ];
    for (pc, pe, n, alpha, eps, expected) in table {
        let w = weight_of("plug_and_play", pc, pe, n, alpha, eps);
        assert!(
            (w - expected).abs() < 1e-12,
            "Pc={pc} Pe={pe} N={n} α={alpha} ε={eps}: {w} vs {expected}"
        );
    }
}

#[test]
fn weight_is_never_below_one_when_some_sample_is_correct() {
    for pc in 1..=8 {
        for pe in 0..=(8 - pc) {
            assert!(weight_of("plug_and_play", pc, pe, 8, 1.0, 0.01) >= 1.0);
        }
    }
}

#[test]
fn uniform_weight_is_one() {
    assert_eq!(weight_of("uniform", 0, 4, 4, 1.0, 0.01), 1.0);
}
