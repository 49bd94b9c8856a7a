//! The four hooks (grade, weight, pair, loss): finding them by name and arity, calling them with
//! typed inputs, and validating what they return.

use std::collections::BTreeMap;

use anyhow::Result;
use rhai::{Dynamic, Map};
use serde::Serialize;

use super::host::{ScriptHost, UnitId};
use super::loss_batch::{LossInputs, LossOutput, STEP_METRIC_NAMES};
use super::tensor::ScriptTensor;
use crate::error::user_error;
use crate::grade::{Grade, Verdict};
use crate::recipe::HookParam;

/// A hook a script can define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Grade,
    Weight,
    Pair,
    Loss,
}

impl HookKind {
    pub const ALL: [HookKind; 4] = [
        HookKind::Grade,
        HookKind::Weight,
        HookKind::Pair,
        HookKind::Loss,
    ];

    /// The function name that defines the hook.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Grade => "grade",
            HookKind::Weight => "weight",
            HookKind::Pair => "pair",
            HookKind::Loss => "loss",
        }
    }

    /// The signature, as shown in messages.
    pub fn signature(self) -> &'static str {
        match self {
            HookKind::Grade => "grade(response, example)",
            HookKind::Weight => "weight(stats)",
            HookKind::Pair => "pair(group)",
            HookKind::Loss => "loss(batch)",
        }
    }

    pub fn arity(self) -> usize {
        if self == HookKind::Grade { 2 } else { 1 }
    }

    /// The folder of `plugins/` holding this kind's plugins.
    pub fn plugin_dir(self) -> &'static str {
        self.name()
    }

    /// The recipe key that chooses this hook when the script does not define it.
    pub fn recipe_key(self) -> &'static str {
        match self {
            HookKind::Grade => "grade.grader",
            HookKind::Weight => "weight.scheme",
            HookKind::Pair => "pairs.rule",
            HookKind::Loss => "loss.name",
        }
    }
}

/// A hook found in a compiled unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HookRef {
    pub unit: UnitId,
    pub kind: HookKind,
}

/// Which response a pair hook picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picked {
    /// Index into the group's samples.
    Sample(usize),
    /// The gold solution.
    Gold,
}

/// A pair hook's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairPick {
    pub chosen: Picked,
    pub rejected: Picked,
}

impl ScriptHost {
    /// The hook of `kind` defined in `unit`, if any; a function of that name with the wrong number
    /// of parameters is an error.
    pub fn find_hook(&self, unit: UnitId, kind: HookKind) -> Result<Option<HookRef>> {
        let Some(f) = self.functions(unit).iter().find(|f| f.name == kind.name()) else {
            return Ok(None);
        };
        if f.params.len() != kind.arity() {
            return Err(user_error(format!(
                "{}: fn {}({}) takes {} parameter(s); the hook is {}",
                self.file(unit),
                f.name,
                f.params.join(", "),
                f.params.len(),
                kind.signature()
            )));
        }
        Ok(Some(HookRef { unit, kind }))
    }

    /// Like [`find_hook`](Self::find_hook), but the hook must exist.
    pub fn require_hook(&self, unit: UnitId, kind: HookKind) -> Result<HookRef> {
        self.find_hook(unit, kind)?.ok_or_else(|| {
            user_error(format!(
                "{}: defines no `{}` hook",
                self.file(unit),
                kind.signature()
            ))
        })
    }

    fn in_hook(&self, hook: HookRef, what: impl std::fmt::Display) -> anyhow::Error {
        user_error(format!(
            "{}: fn {}: {what}",
            self.file(hook.unit),
            hook.kind.signature()
        ))
    }

    /// Calls a loss hook.
    ///
    /// # Shapes
    /// Every input is `[B]`; the hook must return `[B]` (per-pair losses) or `[]` (a scalar).
    pub fn call_loss(
        &self,
        hook: HookRef,
        inputs: &LossInputs,
        params: &[(String, HookParam)],
    ) -> Result<LossOutput> {
        Ok(self.call_loss_metrics(hook, inputs, params)?.0)
    }

    /// Calls a loss hook that may also report metrics: it returns the loss tensor, or
    /// `#{loss: tensor, metrics: #{name: tensor or number, ...}}`; each metric is read back as one
    /// number (a tensor's mean), named as the hook names it.
    ///
    /// # Shapes
    /// As [`ScriptHost::call_loss`]; a metric tensor may have any shape.
    pub fn call_loss_metrics(
        &self,
        hook: HookRef,
        inputs: &LossInputs,
        params: &[(String, HookParam)],
    ) -> Result<(LossOutput, BTreeMap<String, f64>)> {
        let mut batch = Map::new();
        for (name, tensor) in inputs.fields() {
            batch.insert(name.into(), Dynamic::from(ScriptTensor(tensor.clone())));
        }
        insert_params(&mut batch, params);
        let out = self.call(hook.unit, hook.kind.name(), vec![Dynamic::from_map(batch)])?;
        let (out, metrics) = if out.is_map() {
            let mut map = out.cast::<Map>();
            let Some(loss) = map.remove("loss") else {
                return Err(self.in_hook(
                    hook,
                    "returned a map without `loss`; return a Tensor or #{loss, metrics}",
                ));
            };
            let metrics = match map.remove("metrics") {
                None => BTreeMap::new(),
                Some(m) => self.loss_metrics(hook, m)?,
            };
            (loss, metrics)
        } else {
            (out, BTreeMap::new())
        };
        let type_name = out.type_name();
        let Some(ScriptTensor(tensor)) = out.try_cast::<ScriptTensor>() else {
            return Err(self.in_hook(hook, format!("returned {type_name}, expected a Tensor")));
        };
        let b = inputs.len();
        let output = match tensor.dims() {
            [] => LossOutput::Scalar(tensor),
            [1] if b != 1 => LossOutput::Scalar(tensor.squeeze(0)?),
            [n] if *n == b => LossOutput::PerPair(tensor),
            dims => {
                return Err(self.in_hook(
                    hook,
                    format!("returned a tensor of shape {dims:?}; expected [{b}] (one loss per pair) or a scalar"),
                ));
            }
        };
        Ok((output, metrics))
    }

    /// The `metrics` map of a loss hook's result, each value as one number.
    fn loss_metrics(&self, hook: HookRef, metrics: Dynamic) -> Result<BTreeMap<String, f64>> {
        let type_name = metrics.type_name();
        let Some(map) = metrics.try_cast::<Map>() else {
            return Err(self.in_hook(hook, format!("`metrics` is {type_name}, expected a map")));
        };
        let mut out = BTreeMap::new();
        for (name, value) in map {
            if STEP_METRIC_NAMES.contains(&name.as_str()) {
                return Err(self.in_hook(
                    hook,
                    format!("metric `{name}` is a name metrics.jsonl already uses; rename it"),
                ));
            }
            let number = if let Ok(f) = value.as_float() {
                f
            } else if let Ok(i) = value.as_int() {
                i as f64
            } else if let Some(ScriptTensor(t)) = value.clone().try_cast::<ScriptTensor>() {
                t.detach()
                    .mean_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?
            } else {
                return Err(self.in_hook(
                    hook,
                    format!(
                        "metric `{name}` is {}, expected a tensor or a number",
                        value.type_name()
                    ),
                ));
            };
            out.insert(name.to_string(), number);
        }
        Ok(out)
    }

    /// Calls a weight hook with `stats` (a struct serialized to a map) plus the `[weight]` params.
    /// The result must be a finite number ≥ 0.
    pub fn call_weight(
        &self,
        hook: HookRef,
        stats: &impl Serialize,
        params: &[(String, HookParam)],
    ) -> Result<f64> {
        let mut map = to_map(stats)?;
        insert_params(&mut map, params);
        let out = self.call(hook.unit, hook.kind.name(), vec![Dynamic::from_map(map)])?;
        let value = if let Ok(f) = out.as_float() {
            f
        } else if let Ok(i) = out.as_int() {
            i as f64
        } else {
            return Err(self.in_hook(
                hook,
                format!("returned {}, expected a number", out.type_name()),
            ));
        };
        if !value.is_finite() || value < 0.0 {
            return Err(self.in_hook(
                hook,
                format!("returned {value}; a weight must be finite and >= 0"),
            ));
        }
        if value > f64::from(f32::MAX) {
            return Err(self.in_hook(
                hook,
                format!(
                    "returned {}, which overflows f32, the precision training uses",
                    crate::error::show_number(value)
                ),
            ));
        }
        Ok(value)
    }

    /// Calls a grade hook: `true`/`false`, or `#{correct, answer}` (answer `()`/"" when none).
    pub fn call_grade(
        &self,
        hook: HookRef,
        response: &str,
        example: &impl Serialize,
    ) -> Result<Grade> {
        let mut example = to_map(example)?;
        insert_params(&mut example, &self.grade_params);
        let example = Dynamic::from_map(example);
        let out = self.call(
            hook.unit,
            hook.kind.name(),
            vec![Dynamic::from(response.to_string()), example],
        )?;
        if let Ok(correct) = out.as_bool() {
            let verdict = if correct {
                Verdict::Correct
            } else {
                Verdict::Wrong
            };
            return Ok(Grade {
                verdict,
                answer: String::new(),
            });
        }
        let type_name = out.type_name();
        let Some(map) = out.try_cast::<Map>() else {
            return Err(self.in_hook(
                hook,
                format!("returned {type_name}, expected a bool or #{{correct, answer}}"),
            ));
        };
        let correct = match map.get("correct").map(|v| v.as_bool()) {
            Some(Ok(c)) => c,
            _ => return Err(self.in_hook(hook, "the returned map needs `correct: bool`")),
        };
        let answer = match map.get("answer") {
            None => String::new(),
            Some(v) if v.is_unit() => String::new(),
            Some(v) if v.is_string() => v.to_string(),
            Some(v) => v.to_string(),
        };
        let verdict = match (correct, answer.is_empty()) {
            (true, _) => Verdict::Correct,
            (false, false) => Verdict::Wrong,
            (false, true) => Verdict::Invalid,
        };
        Ok(Grade { verdict, answer })
    }

    /// Calls a pair hook: `()` to skip, or `#{chosen, rejected}` where each is a sample index, a
    /// response text from the group, or the gold response text.
    pub fn call_pair(
        &self,
        hook: HookRef,
        group: &impl Serialize,
        responses: &[&str],
        gold_response: Option<&str>,
    ) -> Result<Option<PairPick>> {
        let mut group = to_map(group)?;
        insert_params(&mut group, &self.pair_params);
        let out = self.call(hook.unit, hook.kind.name(), vec![Dynamic::from_map(group)])?;
        if out.is_unit() {
            return Ok(None);
        }
        let type_name = out.type_name();
        let Some(map) = out.try_cast::<Map>() else {
            return Err(self.in_hook(
                hook,
                format!("returned {type_name}, expected () or #{{chosen, rejected}}"),
            ));
        };
        let pick = |field| self.picked(hook, &map, field, (responses, gold_response));
        let chosen = pick("chosen")?;
        let rejected = pick("rejected")?;
        if chosen == rejected {
            return Err(self.in_hook(hook, "chosen and rejected are the same response"));
        }
        Ok(Some(PairPick { chosen, rejected }))
    }

    /// The response a pair hook's returned `map` names in `field`: a sample index, the text of a
    /// sample, or the gold response text.
    fn picked(
        &self,
        hook: HookRef,
        map: &Map,
        field: &str,
        (responses, gold_response): (&[&str], Option<&str>),
    ) -> Result<Picked> {
        let value = map
            .get(field)
            .ok_or_else(|| self.in_hook(hook, format!("the returned map has no `{field}`")))?;
        if let Ok(i) = value.as_int() {
            return usize::try_from(i)
                .ok()
                .filter(|i| *i < responses.len())
                .map(Picked::Sample)
                .ok_or_else(|| {
                    self.in_hook(
                        hook,
                        format!(
                            "`{field}` = {i} is not a sample index (0..{})",
                            responses.len()
                        ),
                    )
                });
        }
        if value.is_string() {
            let text = value.to_string();
            if let Some(i) = responses.iter().position(|r| *r == text) {
                return Ok(Picked::Sample(i));
            }
            if gold_response == Some(text.as_str()) {
                return Ok(Picked::Gold);
            }
            let preview: String = text.chars().take(60).collect();
            return Err(self.in_hook(
                hook,
                format!("`{field}` is a response that is not in the group: {preview:?}"),
            ));
        }
        Err(self.in_hook(
            hook,
            format!(
                "`{field}` is {}, expected a sample index or a response string",
                value.type_name()
            ),
        ))
    }
}

fn to_map(value: &impl Serialize) -> Result<Map> {
    let dynamic = rhai::serde::to_dynamic(value)
        .map_err(|e| anyhow::anyhow!("cannot pass a value to a script: {e}"))?;
    dynamic
        .try_cast::<Map>()
        .ok_or_else(|| anyhow::anyhow!("internal: hook input is not a map"))
}

fn insert_params(map: &mut Map, params: &[(String, HookParam)]) {
    for (name, value) in params {
        let v = match value {
            HookParam::Float(f) => Dynamic::from_float(*f),
            HookParam::Text(s) => Dynamic::from(s.clone()),
        };
        map.insert(name.as_str().into(), v);
    }
}
