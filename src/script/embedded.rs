//! The plugins compiled into the binary, served when no `plugins/` folder is on disk.

/// `(path under plugins/, source text)` for every plugin.
pub const PLUGINS: &[(&str, &str)] = &[
    (
        "grade/arith_checked.rhai",
        include_str!("../../plugins/grade/arith_checked.rhai"),
    ),
    (
        "grade/exact.rhai",
        include_str!("../../plugins/grade/exact.rhai"),
    ),
    (
        "grade/gsm8k.rhai",
        include_str!("../../plugins/grade/gsm8k.rhai"),
    ),
    (
        "grade/math.rhai",
        include_str!("../../plugins/grade/math.rhai"),
    ),
    (
        "lib/preference.rhai",
        include_str!("../../plugins/lib/preference.rhai"),
    ),
    (
        "loss/cdpo.rhai",
        include_str!("../../plugins/loss/cdpo.rhai"),
    ),
    ("loss/dpo.rhai", include_str!("../../plugins/loss/dpo.rhai")),
    (
        "loss/dpop.rhai",
        include_str!("../../plugins/loss/dpop.rhai"),
    ),
    (
        "loss/hinge.rhai",
        include_str!("../../plugins/loss/hinge.rhai"),
    ),
    ("loss/ipo.rhai", include_str!("../../plugins/loss/ipo.rhai")),
    (
        "loss/orpo.rhai",
        include_str!("../../plugins/loss/orpo.rhai"),
    ),
    (
        "loss/robust.rhai",
        include_str!("../../plugins/loss/robust.rhai"),
    ),
    ("loss/rpo.rhai", include_str!("../../plugins/loss/rpo.rhai")),
    ("loss/sft.rhai", include_str!("../../plugins/loss/sft.rhai")),
    (
        "loss/simpo.rhai",
        include_str!("../../plugins/loss/simpo.rhai"),
    ),
    (
        "pair/most_frequent_wrong.rhai",
        include_str!("../../plugins/pair/most_frequent_wrong.rhai"),
    ),
    (
        "weight/plug_and_play.rhai",
        include_str!("../../plugins/weight/plug_and_play.rhai"),
    ),
    (
        "weight/uniform.rhai",
        include_str!("../../plugins/weight/uniform.rhai"),
    ),
    (
        "weight/wpo.rhai",
        include_str!("../../plugins/weight/wpo.rhai"),
    ),
];

/// The text of `plugins/<key>` (e.g. `loss/dpo.rhai`).
pub fn plugin_text(key: &str) -> Option<&'static str> {
    PLUGINS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, text)| *text)
}

/// The plugin names in one folder (`loss` → `dpo`, `ipo`, ...).
pub fn plugin_names(dir: &str) -> Vec<String> {
    PLUGINS
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix(dir)?
                .strip_prefix('/')?
                .strip_suffix(".rhai")
        })
        .map(str::to_string)
        .collect()
}
