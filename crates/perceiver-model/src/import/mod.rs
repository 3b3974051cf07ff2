//! Import of reference checkpoints (lucidrains `perceiver-pytorch` and Hugging Face
//! `transformers` Perceiver state dicts), through a [`NameMap`] between their names and ours.
//!
//! # Design
//! A [`NameMap`] lists, for every tensor of the reference layout, the canonical tensors it
//! holds stacked along axis 0 (usually one; lucidrains' `to_kv.weight` holds our `to_k.weight`
//! then `to_v.weight`), plus aliases: reference names that repeat another reference tensor
//! (lucidrains' tied blocks appear under each alias in a `state_dict`). The same map converts
//! both ways: reference -> canonical for weights ([`NameMap::to_canonical`]), canonical ->
//! reference for weights or gradients ([`NameMap::to_reference`]), so a shared parameter's
//! gradient comes out under its owner's (first) reference name.

pub mod hf;
pub mod lucidrains;

use crate::{ModelError, Perceiver, PerceiverConfig, Result, TensorProblem};
use perceiver_tensor::{Rng, Tensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One reference tensor and the canonical tensors it holds, stacked along axis 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedTensor {
    /// The reference name.
    pub reference: String,
    /// Canonical names, in stacking order.
    pub ours: Vec<String>,
}

/// The correspondence between a reference layout and our canonical names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameMap {
    /// Every reference tensor that owns its values.
    pub tensors: Vec<MappedTensor>,
    /// `(alias, owner)`: reference names that repeat another reference tensor.
    pub aliases: Vec<(String, String)>,
    /// Whole-prefix aliases (`layers.2.` -> `layers.1.`), as lucidrains' tied blocks.
    pub alias_prefixes: BTreeMap<String, String>,
    /// Reference names of state that is not trained (BatchNorm's running statistics): loaded
    /// like the others, left out of [`NameMap::to_reference`] when `get` has no value for them
    /// (gradients).
    pub buffers: BTreeSet<String>,
    /// Reference names accepted and dropped on import (BatchNorm's `num_batches_tracked`).
    pub ignored: BTreeSet<String>,
}

impl NameMap {
    fn push(&mut self, reference: impl Into<String>, ours: &[String]) {
        self.tensors.push(MappedTensor {
            reference: reference.into(),
            ours: ours.to_vec(),
        });
    }

    /// Maps `{reference}.weight/.bias` to `{ours}.weight/.bias`.
    fn push_wb(&mut self, reference: &str, ours: &str) {
        for s in ["weight", "bias"] {
            self.push(format!("{reference}.{s}"), &[format!("{ours}.{s}")]);
        }
    }

    /// Checks that the map covers exactly the model's parameters.
    fn check_coverage(&self, model: &Perceiver, layout: &str) -> Result<()> {
        let mapped: BTreeSet<&str> = self
            .tensors
            .iter()
            .flat_map(|m| m.ours.iter().map(String::as_str))
            .collect();
        let ours: BTreeSet<&str> = model.params().names().collect();
        let unmapped: Vec<&str> = ours.difference(&mapped).copied().collect();
        let absent: Vec<&str> = mapped.difference(&ours).copied().collect();
        if unmapped.is_empty() && absent.is_empty() {
            return Ok(());
        }
        Err(ModelError::Unsupported(format!(
            "the {layout} layout does not fit this configuration: parameters without a {layout} name: {unmapped:?}; {layout} tensors without a parameter: {absent:?}"
        )))
    }

    /// Converts reference-named tensors to canonical ones for `model`, listing every missing,
    /// unexpected or mis-shaped tensor (and tied aliases whose values differ from their owner).
    pub fn to_canonical(
        &self,
        model: &Perceiver,
        tensors: &[(String, Tensor)],
        context: &str,
    ) -> Result<Vec<(String, Tensor)>> {
        let shapes: BTreeMap<String, Vec<usize>> = model
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.shape()))
            .collect();
        let by_name: HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut problems = Vec::new();
        let mut out = Vec::new();
        let mut expected_shapes: HashMap<&str, Vec<usize>> = HashMap::new();
        for m in &self.tensors {
            let parts: Vec<&Vec<usize>> = m
                .ours
                .iter()
                .map(|o| {
                    shapes.get(o).ok_or_else(|| {
                        ModelError::Unsupported(format!(
                            "{context}: `{}` maps to `{o}`, which this model does not have",
                            m.reference
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            // Stacked parts: the first dimensions add up, the others are the first part's.
            let mut expected = parts[0].clone();
            if parts.len() > 1 && !expected.is_empty() {
                expected[0] = parts.iter().map(|s| s.first().copied().unwrap_or(1)).sum();
            }
            expected_shapes.insert(&m.reference, expected.clone());
            let Some(t) = by_name.get(m.reference.as_str()) else {
                problems.push(TensorProblem::Missing {
                    name: m.reference.clone(),
                    expected,
                });
                continue;
            };
            if t.shape() != expected.as_slice() {
                problems.push(TensorProblem::Shape {
                    name: m.reference.clone(),
                    expected,
                    found: t.shape().to_vec(),
                });
                continue;
            }
            let mut start = 0;
            for (o, s) in m.ours.iter().zip(&parts) {
                let part = if m.ours.len() == 1 {
                    (*t).clone()
                } else {
                    t.narrow(0, start, s[0])?.contiguous()
                };
                start += s.first().copied().unwrap_or(1);
                out.push((o.clone(), part));
            }
        }
        let mut alias_names = BTreeSet::new();
        for (alias, owner) in &self.aliases {
            alias_names.insert(alias.as_str());
            let Some(a) = by_name.get(alias.as_str()) else {
                continue;
            };
            let expected = expected_shapes
                .get(owner.as_str())
                .cloned()
                .unwrap_or_default();
            if a.shape() != expected.as_slice() {
                problems.push(TensorProblem::Shape {
                    name: alias.clone(),
                    expected,
                    found: a.shape().to_vec(),
                });
                continue;
            }
            if let Some(o) = by_name.get(owner.as_str()) {
                if o.shape() == a.shape() {
                    let d = o
                        .to_vec()
                        .iter()
                        .zip(a.to_vec())
                        .map(|(x, y)| (x - y).abs())
                        .fold(0.0f32, f32::max);
                    if d > 0.0 || d.is_nan() {
                        problems.push(TensorProblem::AliasMismatch {
                            alias: alias.clone(),
                            owner: owner.clone(),
                            max_abs_diff: d,
                        });
                    }
                }
            }
        }
        let known: BTreeSet<&str> = self.tensors.iter().map(|m| m.reference.as_str()).collect();
        for (n, t) in tensors {
            if !known.contains(n.as_str())
                && !alias_names.contains(n.as_str())
                && !self.ignored.contains(n)
            {
                problems.push(TensorProblem::Unexpected {
                    name: n.clone(),
                    shape: t.shape().to_vec(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(ModelError::Tensors {
                context: context.to_string(),
                problems,
            });
        }
        Ok(out)
    }

    /// Converts canonical tensors (weights or gradients, looked up by `get`) to reference
    /// names: owners only, or owners and aliases when `with_aliases`. Parts are stacked along
    /// axis 0. Fails naming the first canonical tensor `get` does not provide.
    pub fn to_reference(
        &self,
        get: &dyn Fn(&str) -> Option<Tensor>,
        with_aliases: bool,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        let mut by_ref: HashMap<&str, Tensor> = HashMap::new();
        for m in &self.tensors {
            if self.buffers.contains(&m.reference) && m.ours.iter().any(|o| get(o).is_none()) {
                continue;
            }
            let mut parts = Vec::new();
            for o in &m.ours {
                parts.push(get(o).ok_or_else(|| {
                    ModelError::Unsupported(format!("no value for `{o}` (for `{}`)", m.reference))
                })?);
            }
            let t = if parts.len() == 1 {
                parts.pop().expect("one part")
            } else {
                let refs: Vec<&Tensor> = parts.iter().collect();
                Tensor::concat(&refs, 0)?
            };
            by_ref.insert(&m.reference, t.clone());
            out.push((m.reference.clone(), t));
        }
        if with_aliases {
            for (alias, owner) in &self.aliases {
                if let Some(t) = by_ref.get(owner.as_str()) {
                    out.push((alias.clone(), t.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Builds a model for `config` and loads reference-named `tensors` into it. A `config`
    /// describing more parameters than `tensors` hold values is refused before the model is
    /// allocated.
    pub fn import(
        &self,
        config: PerceiverConfig,
        tensors: &[(String, Tensor)],
        layout: &str,
        context: &str,
    ) -> Result<Perceiver> {
        let params = config.try_num_params()?;
        let held = tensors
            .iter()
            .fold(0u64, |a, (_, t)| a.saturating_add(t.numel() as u64));
        if params > held {
            return Err(ModelError::Unsupported(format!(
                "{context}: the configuration describes {params} parameters but the {layout} \
                 tensors hold only {held} values; check num_latents, latent_dim and the other \
                 sizes of the configuration"
            )));
        }
        let model = Perceiver::new(config, &mut Rng::new(0))?;
        self.check_coverage(&model, layout)?;
        let canonical = self.to_canonical(&model, tensors, context)?;
        model.load_named(&canonical, context)?;
        Ok(model)
    }
}

/// The reference implementation a fixture or checkpoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// lucidrains `perceiver-pytorch` (`Perceiver`).
    Lucidrains,
    /// Hugging Face `transformers` (`PerceiverForImageClassificationFourier`).
    HuggingFace,
}

impl Reference {
    /// From the `reference` metadata value (`perceiver-pytorch ...` or `transformers ...`).
    pub fn detect(metadata: &HashMap<String, String>) -> Result<Self> {
        let r = metadata
            .get("reference")
            .ok_or_else(|| ModelError::Unsupported("no `reference` key in the metadata".into()))?;
        if r.starts_with("perceiver-pytorch") {
            Ok(Reference::Lucidrains)
        } else if r.starts_with("transformers") {
            Ok(Reference::HuggingFace)
        } else {
            Err(ModelError::Unsupported(format!("unknown reference `{r}`")))
        }
    }
}

/// A model imported from a reference checkpoint, with the map used.
#[derive(Clone, Debug)]
pub struct ReferenceImport {
    /// Which reference.
    pub reference: Reference,
    /// The model.
    pub model: Perceiver,
    /// Reference names <-> canonical names.
    pub names: NameMap,
}

/// Builds the configuration from `metadata` (keys `reference`, `config`, and `axes` for
/// lucidrains or `hw` / `fourier` for Hugging Face) and imports the state dict `params`
/// (reference names, without any `param.` prefix).
pub fn import_reference(
    params: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<ReferenceImport> {
    let reference = Reference::detect(metadata)?;
    let (config, names) = match reference {
        Reference::Lucidrains => {
            let c = lucidrains::config_from_metadata(metadata)?;
            let n = lucidrains::name_map(&c)?;
            (c, n)
        }
        Reference::HuggingFace => {
            let shapes: BTreeMap<String, Vec<usize>> = params
                .iter()
                .map(|(n, t)| (n.clone(), t.shape().to_vec()))
                .collect();
            let c = hf::config_from_metadata(metadata, Some(&shapes))?;
            let n = hf::name_map(&c)?;
            (c, n)
        }
    };
    let layout = match reference {
        Reference::Lucidrains => "lucidrains",
        Reference::HuggingFace => "Hugging Face",
    };
    let model = names.import(config, params, layout, layout)?;
    Ok(ReferenceImport {
        reference,
        model,
        names,
    })
}

/// Parses a JSON string field of the metadata.
fn meta_json(metadata: &HashMap<String, String>, key: &str) -> Result<serde_json::Value> {
    let s = metadata
        .get(key)
        .ok_or_else(|| ModelError::Unsupported(format!("no `{key}` key in the metadata")))?;
    serde_json::from_str(s).map_err(|e| ModelError::Json {
        what: format!("metadata `{key}`"),
        msg: e.to_string(),
    })
}

/// A list of sizes from JSON.
fn json_sizes(v: &serde_json::Value, what: &str) -> Result<Vec<usize>> {
    v.as_array()
        .and_then(|a| a.iter().map(|x| x.as_u64().map(|u| u as usize)).collect())
        .ok_or_else(|| ModelError::Json {
            what: what.to_string(),
            msg: format!("expected a list of sizes, got {v}"),
        })
}
