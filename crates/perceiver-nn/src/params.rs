//! Named parameters: [`Param`] (a trainable tensor with a stable graph identity) and
//! [`ParamStore`] (all of a model's parameters under hierarchical names such as
//! `layers.0.cross_attn.to_q.weight`).
//!
//! # Design
//! A parameter is a [`Leaf`] of the autograd graph that never changes, while its value can be
//! replaced or updated in place by an optimizer. Modules keep a [`Param`] (cheap to clone, shared)
//! and read [`Param::tensor`] in their forward pass; gradients are looked up by the param's leaf id
//! in [`Grads`].

use perceiver_tensor::autograd::{Grads, Leaf, NodeId};
use perceiver_tensor::{Error, Result, Tensor};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

struct ParamInner {
    name: String,
    leaf: Leaf,
    value: RwLock<Tensor>,
}

/// A trainable tensor with a name and a stable autograd identity.
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Param({}, {:?})", self.name(), self.shape())
    }
}

impl Param {
    /// A parameter named `name` with initial value `value` (detached, made contiguous).
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        let value = value.detach().contiguous();
        Param(Arc::new(ParamInner {
            name: name.into(),
            leaf: Leaf::new(value.shape()),
            value: RwLock::new(value),
        }))
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The graph identity used to look up its gradient.
    pub fn id(&self) -> NodeId {
        self.0.leaf.id()
    }

    /// The current value as a tracked leaf tensor (tracked only outside `no_grad`).
    pub fn tensor(&self) -> Tensor {
        let v = self.0.value.read().expect("param lock").clone();
        v.attach(&self.0.leaf)
    }

    /// The current value, untracked.
    pub fn value(&self) -> Tensor {
        self.0.value.read().expect("param lock").clone()
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        self.0.value.read().expect("param lock").shape().to_vec()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.value.read().expect("param lock").numel()
    }

    /// Replaces the value; the shape must not change.
    #[track_caller]
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut v = self.0.value.write().expect("param lock");
        if v.shape() != value.shape() {
            return Err(Error::shape(
                "Param::set",
                format!("new value for `{}` must keep its shape", self.0.name),
                v.shape(),
                value.shape(),
            ));
        }
        *v = value.detach().contiguous();
        Ok(())
    }

    /// Updates the value in place (copy-on-write if a graph still holds the old value).
    pub fn update(&self, f: impl FnOnce(&mut [f32])) {
        let mut v = self.0.value.write().expect("param lock");
        f(v.data_mut());
    }

    /// This parameter's gradient in `grads`, or [`Error::NoGradient`] naming it.
    pub fn grad<'g>(&self, grads: &'g Grads) -> Result<&'g Tensor> {
        grads.get_id(self.id()).ok_or_else(|| Error::NoGradient {
            name: self.0.name.clone(),
        })
    }
}

/// Every parameter of a model by hierarchical name, in a stable (sorted) order.
#[derive(Clone, Default, Debug)]
pub struct ParamStore {
    params: BTreeMap<String, Param>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter named `name`; errors if the name is taken.
    #[track_caller]
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<Param> {
        let name = name.into();
        if self.params.contains_key(&name) {
            return Err(Error::invalid(
                "ParamStore::add",
                format!("parameter `{name}` already exists"),
            ));
        }
        let p = Param::new(name.clone(), value);
        self.params.insert(name, p.clone());
        Ok(p)
    }

    /// Registers an existing parameter (a shared one may be registered under one name only).
    #[track_caller]
    pub fn insert(&mut self, param: Param) -> Result<()> {
        let name = param.name().to_string();
        if self.params.contains_key(&name) {
            return Err(Error::invalid(
                "ParamStore::insert",
                format!("parameter `{name}` already exists"),
            ));
        }
        self.params.insert(name, param);
        Ok(())
    }

    /// The parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    /// All parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.params.values()
    }

    /// All names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(|s| s.as_str())
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.params.values().map(|p| p.numel()).sum()
    }

    /// The current values by name (for checkpoints).
    pub fn to_named_tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, p)| (n.clone(), p.value()))
            .collect()
    }
}
