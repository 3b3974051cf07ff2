//! The model: one structure, built from a [`PerceiverConfig`].

use crate::config::{
    AttentionKernel, AttnDims, FeedForwardConfig, FeedForwardKind, HeadConfig, PerceiverConfig,
    QueryConfig, SharingPlan,
};
use crate::preprocess::InputPreprocessor;
use crate::Preprocessor;
use crate::{ModelError, Result, TensorProblem};
use perceiver_attn::{Call, KeyValues, MultiHeadAttention, MultiHeadAttentionConfig, SharedKv};
use perceiver_nn::{FusedOps, LayerNorm, Linear};
use perceiver_nn::{Param, ParamStore};
use perceiver_pos::{init_array, FourierFeatures, PositionEncoder};
use perceiver_tensor::{Error, GeluKind, Rng, Tensor};
use std::collections::{BTreeMap, BTreeSet};

/// Options of one forward pass.
///
/// ```
/// use perceiver_model::{ForwardOptions, Perceiver, PerceiverConfig, Rng, Tensor};
/// // The default is inference: no mask, positions from the input's grid, no dropout.
/// let opts = ForwardOptions::default();
/// assert!(!opts.train && opts.mask.is_none() && opts.positions.is_none());
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     ..PerceiverConfig::default()
/// };
/// let model = Perceiver::new(config.clone(), &mut Rng::new(0))?;
/// // 5 tokens at explicit 2-D positions, the last two of them masked out.
/// let x = Tensor::randn(&[2, 5, 1], &mut Rng::new(1));
/// let positions = Tensor::zeros(&[2, 5, 2]);
/// let mask = Tensor::from_vec(vec![1.0, 1.0, 1.0, 0.0, 0.0].repeat(2), &[2, 5])?;
/// let opts = ForwardOptions { positions: Some(&positions), mask: Some(&mask), ..opts };
/// assert_eq!(model.forward_with(&x, opts)?.logits.shape(), &[2, 10]);
/// // Training with dropout needs a random generator.
/// let mut config = config;
/// config.dropout.feed_forward = 0.1;
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let x = Tensor::zeros(&[2, 4, 4, 1]);
/// let no_rng = ForwardOptions { train: true, ..Default::default() };
/// assert!(model.forward_with(&x, no_rng).unwrap_err().to_string().contains("rng"));
/// let mut rng = Rng::new(2);
/// let opts = ForwardOptions { train: true, rng: Some(&mut rng), ..Default::default() };
/// assert_eq!(model.forward_with(&x, opts)?.logits.shape(), &[2, 10]);
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Default)]
pub struct ForwardOptions<'a> {
    /// Key padding mask `[batch, tokens]` for the encoder cross-attends (non-zero = attend).
    pub mask: Option<&'a Tensor>,
    /// Explicit positions `[batch, tokens, d]` (point clouds, permuted pixels). The input is
    /// then `[batch, tokens, channels]` and the Fourier features are those of these positions.
    pub positions: Option<&'a Tensor>,
    /// Training mode: dropout is active (needs `rng` when a dropout probability is positive).
    pub train: bool,
    /// Random generator for dropout.
    pub rng: Option<&'a mut Rng>,
}

/// What the forward returns.
#[derive(Clone, Debug)]
pub struct PerceiverOutput {
    /// `[batch, classes]` (classifier, or a decoder with one query), `[batch, queries,
    /// outputs]` (decoder), or the latents (no head).
    pub logits: Tensor,
    /// The latents after the last block, `[batch, num_latents, latent_dim]`.
    pub latents: Tensor,
}

struct Ctx<'a> {
    train: bool,
    rng: Option<&'a mut Rng>,
}

impl Ctx<'_> {
    fn dropout(&mut self, x: Tensor, p: f32) -> Result<Tensor> {
        if !self.train || p == 0.0 {
            return Ok(x);
        }
        let rng = self.rng.as_deref_mut().ok_or_else(|| {
            Error::invalid(
                "Perceiver",
                "dropout in training needs a random generator (ForwardOptions::rng)",
            )
        })?;
        Ok(x.dropout(p, true, rng)?)
    }
}

#[derive(Clone, Debug)]
struct FeedForward {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    kind: FeedForwardKind,
    gelu: GeluKind,
    dropout: f32,
}

impl FeedForward {
    fn new(
        store: &mut ParamStore,
        name: &str,
        c: &PerceiverConfig,
        ff: &FeedForwardConfig,
        dim: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (h1, h2) = ff.hidden(dim);
        Ok(FeedForward {
            norm: LayerNorm::new(store, &format!("{name}.norm"), dim, c.layer_norm_eps)?,
            fc1: Linear::new(store, &format!("{name}.fc1"), dim, h1, c.bias.ff, rng)?,
            fc2: Linear::new(store, &format!("{name}.fc2"), h2, dim, c.bias.ff, rng)?,
            kind: ff.kind,
            gelu: c.gelu,
            dropout: c.dropout.feed_forward,
        })
    }

    /// `x + FF(LN(x))`. Without dropout, one fused op for a GELU feed-forward
    /// ([`perceiver_nn::ops::mlp_add`]), and the residual added in the second layer's epilogue
    /// ([`Linear::forward_add`]) for GEGLU.
    fn forward_add(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let xn = self.norm.forward(x)?;
        let dropout = ctx.train && self.dropout > 0.0;
        if self.kind == FeedForwardKind::Gelu && !dropout {
            // Both layers, the GELU and the residual as one op, whose backward applies the
            // GELU's derivative in a GEMM epilogue (perceiver_nn::ops::mlp_add).
            let (w1, w2) = (self.fc1.weight.tensor(), self.fc2.weight.tensor());
            let b1 = self.fc1.bias.as_ref().map(|b| b.tensor());
            let b2 = self.fc2.bias.as_ref().map(|b| b.tensor());
            return Ok(xn.mlp_add(&w1, b1.as_ref(), self.gelu, &w2, b2.as_ref(), x)?);
        }
        let h = match self.kind {
            FeedForwardKind::Gelu => self.fc1.forward_act(&xn, Some(self.gelu))?,
            FeedForwardKind::Geglu => {
                let h = self.fc1.forward(&xn)?;
                let last = h.rank() - 1;
                let parts = h.chunk(2, last)?;
                parts[0].mul(&parts[1].gelu(self.gelu))?
            }
        };
        if !dropout {
            return Ok(self.fc2.forward_add(&h, x)?);
        }
        let y = self.fc2.forward(&h)?;
        Ok(ctx.dropout(y, self.dropout)?.add(x)?)
    }
}

fn mha(
    store: &mut ParamStore,
    name: &str,
    c: &PerceiverConfig,
    d: AttnDims,
    rng: &mut Rng,
) -> Result<MultiHeadAttention> {
    let kernel = c.attention_kernel;
    let cfg = MultiHeadAttentionConfig {
        query_dim: d.q_in,
        kv_dim: d.kv_in,
        heads: d.heads,
        qk_dim: d.qk,
        v_dim: d.v,
        out_dim: d.out,
        bias_q: c.bias.q,
        bias_k: c.bias.k,
        bias_v: c.bias.v,
        bias_o: c.bias.out,
        dropout: c.dropout.attention,
        kernel,
        scale: None,
    };
    Ok(MultiHeadAttention::new(store, name, cfg, rng)?)
}

/// A cross-attend: `z = [z +] Attn(LN(z), LN(x))`, then `z = z + FF(LN(z))`.
#[derive(Clone, Debug)]
struct CrossAttend {
    norm_q: LayerNorm,
    norm_kv: LayerNorm,
    attn: MultiHeadAttention,
    ff: FeedForward,
    query_residual: bool,
}

impl CrossAttend {
    fn new(
        store: &mut ParamStore,
        name: &str,
        c: &PerceiverConfig,
        d: AttnDims,
        ff: &FeedForwardConfig,
        query_residual: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(CrossAttend {
            norm_q: LayerNorm::new(store, &format!("{name}.norm_q"), d.q_in, c.layer_norm_eps)?,
            norm_kv: LayerNorm::new(store, &format!("{name}.norm_kv"), d.kv_in, c.layer_norm_eps)?,
            attn: mha(store, &format!("{name}.attn"), c, d, rng)?,
            ff: FeedForward::new(store, &format!("{name}.ff"), c, ff, d.out, rng)?,
            query_residual,
        })
    }

    /// `z + FF(z + Attn(LN(z), LN(x)))` (the query residual where configured) for the input
    /// `x` of `kv`.
    fn forward(
        &self,
        z: &Tensor,
        kv: &mut SharedKv<'_>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let q = self.norm_q.forward(z)?;
        let call = Call {
            mask,
            train: ctx.train,
            rng: ctx.rng.as_deref_mut(),
            residual: self.query_residual.then_some(z),
        };
        let z = kv.attend(&self.attn, &self.norm_kv, &q, call)?;
        self.ff.forward_add(&z, ctx)
    }
}

/// A latent self-attention layer: `z = z + Attn(LN(z))`, `z = z + FF(LN(z))`.
#[derive(Clone, Debug)]
struct SelfLayer {
    norm: LayerNorm,
    attn: MultiHeadAttention,
    ff: FeedForward,
}

impl SelfLayer {
    fn forward(&self, z: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let n = self.norm.forward(z)?;
        // (the residual is added in the output projection's epilogue)
        let call = Call {
            mask: None,
            train: ctx.train,
            rng: ctx.rng.as_deref_mut(),
            residual: Some(z),
        };
        let z = self
            .attn
            .attend(&n, KeyValues::Rows { x: &n, norm: None }, call)?;
        self.ff.forward_add(&z, ctx)
    }
}

#[derive(Clone, Debug)]
enum Queries {
    Trainable(Param),
    Fourier(Tensor),
}

#[derive(Clone, Debug)]
enum Head {
    None,
    Classifier {
        norm: Option<LayerNorm>,
        fc: Linear,
    },
    Decoder {
        queries: Queries,
        cross: Box<CrossAttend>,
        fc: Linear,
    },
}

/// The Perceiver / Perceiver IO.
///
/// Cloning is cheap and the clone shares the parameters (a [`Param`] is a shared handle):
/// use [`Perceiver::save_checkpoint`] / [`Perceiver::load_checkpoint`] or
/// [`Perceiver::load_named`] on a fresh model for an independent copy.
///
/// ```
/// use perceiver_model::{Perceiver, PerceiverConfig};
/// use perceiver_tensor::{Rng, Tensor};
/// let config = PerceiverConfig { input_axes: vec![6, 5], num_latents: 8, latent_dim: 16,
///     ..PerceiverConfig::default() };
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let x = Tensor::randn(&[2, 6, 5, 1], &mut Rng::new(1));
/// let out = model.forward(&x, None)?;
/// assert_eq!(out.logits.shape(), &[2, 10]);
/// assert_eq!(out.latents.shape(), &[2, 8, 16]);
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Perceiver {
    config: PerceiverConfig,
    params: ParamStore,
    plan: SharingPlan,
    pre: InputPreprocessor,
    pos: PositionEncoder,
    latents: Param,
    cross: Vec<CrossAttend>,
    towers: Vec<Vec<SelfLayer>>,
    head: Head,
}

impl Perceiver {
    /// Validates `config` and builds the model with fresh parameters drawn from `rng`
    /// (PyTorch default init for Linear layers, LayerNorm 1 / 0, the configured latent init).
    pub fn new(config: PerceiverConfig, rng: &mut Rng) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let mut store = ParamStore::new();
        let pre = InputPreprocessor::new(&mut store, &c.preprocessor, c.input_channels, rng)?;
        let pos = PositionEncoder::new(
            &mut store,
            "pos",
            &c.position_encoding,
            c.position_projection,
            &c.token_axes(),
            rng,
        )?;
        let shape = [c.num_latents, c.latent_dim];
        let li = &c.latent_init;
        let lat = match li.truncation {
            _ if li.std == 0.0 => Tensor::zeros(&shape),
            Some(t) => Tensor::trunc_normal(&shape, 0.0, li.std, -t, t, rng)?,
            None => Tensor::randn(&shape, rng).mul_scalar(li.std),
        };
        let latents = store.add("latents", lat)?;
        let plan = c.sharing_plan();
        let mut cross = Vec::new();
        for s in 0..plan.num_cross_sets() {
            cross.push(CrossAttend::new(
                &mut store,
                &format!("cross.{s}"),
                c,
                c.cross_dims(),
                &c.cross_feed_forward,
                c.query_residual,
                rng,
            )?);
        }
        let sd = c.self_dims();
        let mut towers = Vec::new();
        for s in 0..plan.num_tower_sets() {
            let mut tower = Vec::new();
            for j in 0..c.self_per_block {
                let name = format!("self.{s}.{j}");
                tower.push(SelfLayer {
                    norm: LayerNorm::new(
                        &mut store,
                        &format!("{name}.norm"),
                        sd.q_in,
                        c.layer_norm_eps,
                    )?,
                    attn: mha(&mut store, &format!("{name}.attn"), c, sd, rng)?,
                    ff: FeedForward::new(
                        &mut store,
                        &format!("{name}.ff"),
                        c,
                        &c.self_feed_forward,
                        sd.out,
                        rng,
                    )?,
                });
            }
            towers.push(tower);
        }
        let head = match &c.head {
            HeadConfig::None => Head::None,
            HeadConfig::Classifier {
                num_classes,
                layer_norm,
            } => Head::Classifier {
                norm: if *layer_norm {
                    Some(LayerNorm::new(
                        &mut store,
                        "head.norm",
                        c.latent_dim,
                        c.layer_norm_eps,
                    )?)
                } else {
                    None
                },
                fc: Linear::new(&mut store, "head.fc", c.latent_dim, *num_classes, true, rng)?,
            },
            HeadConfig::Decoder(d) => {
                let dims = c.decoder_dims().expect("decoder head");
                let queries = match &d.query {
                    QueryConfig::Trainable {
                        num_queries,
                        channels,
                        init_scale,
                    } => Queries::Trainable(store.add(
                        "decoder.query",
                        init_array(&[*num_queries, *channels], *init_scale, rng)?,
                    )?),
                    QueryConfig::Fourier {
                        fourier,
                        index_dims,
                    } => {
                        let g = FourierFeatures::new(fourier.clone()).grid(index_dims)?;
                        let (q, ch) = d.query.shape();
                        Queries::Fourier(g.reshape(&[q, ch])?)
                    }
                };
                Head::Decoder {
                    queries,
                    cross: Box::new(CrossAttend::new(
                        &mut store,
                        "decoder.cross",
                        c,
                        dims,
                        &d.feed_forward,
                        d.query_residual,
                        rng,
                    )?),
                    fc: Linear::new(&mut store, "decoder.fc", dims.out, d.num_outputs, true, rng)?,
                }
            }
        };
        Ok(Perceiver {
            config,
            params: store,
            plan,
            pre,
            pos,
            latents,
            cross,
            towers,
            head,
        })
    }

    /// The names of the model's state that is not trained (BatchNorm's running statistics in
    /// the conv preprocessor): held in [`Perceiver::params`] so checkpoints keep it, without
    /// gradients, so an optimizer must leave it (freeze it).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.config.state_names()
    }

    /// The configuration.
    pub fn config(&self) -> &PerceiverConfig {
        &self.config
    }

    /// Every parameter by canonical name (a shared set appears once).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params.numel()
    }

    /// Switches every attention to `kernel` (where attention dropout applies, the reference
    /// kernel runs whatever the setting: [`MultiHeadAttention::kernel_for`]).
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.config.attention_kernel = kernel;
        let k = kernel;
        for c in &mut self.cross {
            c.attn.config.kernel = k;
        }
        for l in self.towers.iter_mut().flatten() {
            l.attn.config.kernel = k;
        }
        if let Head::Decoder { cross, .. } = &mut self.head {
            cross.attn.config.kernel = k;
        }
    }

    /// The resolved weight sharing.
    pub fn sharing_plan(&self) -> &SharingPlan {
        &self.plan
    }

    /// The position encoding module.
    pub fn position_encoder(&self) -> &PositionEncoder {
        &self.pos
    }

    /// The position encoding of the grid `dims`, `[*dims, channels]` (`None` without one).
    pub fn position_grid(&self, dims: &[usize]) -> Result<Option<Tensor>> {
        match self.pos.grid(dims)? {
            None => Ok(None),
            Some(g) => {
                let mut shape = dims.to_vec();
                shape.push(g.shape()[1]);
                Ok(Some(g.reshape(&shape)?))
            }
        }
    }

    /// Inference forward (no dropout): `input` is `[batch, *axes, channels]`, `mask` an optional
    /// key padding mask `[batch, prod(axes)]` (non-zero = attend). A bad shape is an error
    /// naming the caller's line.
    ///
    /// ```
    /// use perceiver_model::{preset, Perceiver, Rng, Tensor};
    /// let model = Perceiver::new(preset("mnist-small")?, &mut Rng::new(0))?;
    /// let x = Tensor::randn(&[2, 28, 28, 1], &mut Rng::new(1));
    /// let out = perceiver_model::no_grad(|| model.forward(&x, None))?;
    /// assert_eq!(out.logits.shape(), &[2, 10]);
    /// assert!(model.forward(&Tensor::zeros(&[2, 28, 1]), None).is_err());
    /// # Ok::<(), perceiver_model::ModelError>(())
    /// ```
    #[track_caller]
    pub fn forward(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<PerceiverOutput> {
        self.forward_with(
            input,
            ForwardOptions {
                mask,
                ..Default::default()
            },
        )
    }

    /// The byte array fed to the cross-attends: `[batch, tokens, input_width]`.
    #[track_caller]
    pub fn embed(&self, input: &Tensor, positions: Option<&Tensor>) -> Result<Tensor> {
        match self.embed_parts(input, positions)? {
            (x, None) => Ok(x),
            (x, Some(p)) => Ok(Tensor::concat(&[&x, &p], 2)?),
        }
    }

    /// The two parts of [`Perceiver::embed`]'s byte array: the input channels
    /// `[batch, tokens, channels]` and the position features (a broadcast view for a grid).
    #[track_caller]
    fn embed_parts(
        &self,
        input: &Tensor,
        positions: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let c = &self.config;
        let r = input.rank();
        // (a function, not a closure, so that the error names the caller's line)
        #[track_caller]
        fn bad(msg: String) -> ModelError {
            Error::invalid("Perceiver", msg).into()
        }
        if r < 2 || input.shape()[r - 1] != c.input_channels {
            return Err(bad(format!(
                "the input's last axis must hold the {} input channels, got shape {:?}",
                c.input_channels,
                input.shape()
            )));
        }
        let b = input.shape()[0];
        let (x, pos) = match positions {
            Some(p) => {
                if r != 3 || p.rank() != 3 || p.shape()[..2] != input.shape()[..2] {
                    return Err(bad(format!(
                        "with explicit positions the input must be [batch, n, channels] and the positions [batch, n, d], got {:?} and {:?}",
                        input.shape(),
                        p.shape()
                    )));
                }
                if matches!(c.preprocessor, Preprocessor::ConvDownsample { .. }) {
                    return Err(bad(
                        "explicit positions need a model without a convolutional preprocessor"
                            .into(),
                    ));
                }
                let pos = if self.pos.is_none() {
                    None
                } else {
                    Some(self.pos.points(p)?)
                };
                (self.pre.forward(input)?, pos)
            }
            None => {
                let dims = &input.shape()[1..r - 1];
                if dims.len() != c.input_axes.len() {
                    return Err(bad(format!(
                        "expected an input [batch, {} axes, channels], got shape {:?}",
                        c.input_axes.len(),
                        input.shape()
                    )));
                }
                // The preprocessor may change the grid (a strided convolution) and the channels.
                let tokens = self.pre.forward(input)?;
                let dims = &tokens.shape()[1..r - 1];
                let m: usize = dims.iter().product();
                let x = tokens.reshape(&[b, m, c.token_channels()])?;
                let pos = match self.pos.grid(dims)? {
                    None => None,
                    Some(g) => {
                        let cp = g.shape()[1];
                        Some(g.unsqueeze(0)?.broadcast_to(&[b, m, cp])?)
                    }
                };
                (x, pos)
            }
        };
        Ok((x, pos))
    }

    /// Forward with options (mask, explicit positions, training mode).
    ///
    /// ```
    /// use perceiver_model::{preset, ForwardOptions, Perceiver, Rng, Tensor};
    /// let mut config = preset("mnist-small")?;
    /// config.dropout.attention = 0.1;
    /// let model = Perceiver::new(config, &mut Rng::new(0))?;
    /// let x = Tensor::randn(&[2, 28, 28, 1], &mut Rng::new(1));
    /// // Training mode: dropout draws from `rng`; the mask hides the last 100 pixels of example 1.
    /// let mut keep = vec![1.0; 2 * 784];
    /// keep[2 * 784 - 100..].fill(0.0);
    /// let mask = Tensor::from_vec(keep, &[2, 784])?;
    /// let mut rng = Rng::new(2);
    /// let opts = ForwardOptions { mask: Some(&mask), train: true, rng: Some(&mut rng), ..Default::default() };
    /// let out = model.forward_with(&x, opts)?;
    /// assert_eq!(out.latents.shape()[0], 2);
    /// # Ok::<(), perceiver_model::ModelError>(())
    /// ```
    #[track_caller]
    pub fn forward_with(
        &self,
        input: &Tensor,
        opts: ForwardOptions<'_>,
    ) -> Result<PerceiverOutput> {
        let c = &self.config;
        let (x_in, pos) = self.embed_parts(input, opts.positions)?;
        let (b, m) = (x_in.shape()[0], x_in.shape()[1]);
        if let Some(mask) = opts.mask {
            if mask.shape() != [b, m] {
                return Err(Error::shape(
                    "Perceiver",
                    "the key padding mask must be [batch, tokens]",
                    mask.shape(),
                    &[b, m],
                )
                .into());
            }
        }
        let mut ctx = Ctx {
            train: opts.train,
            rng: opts.rng,
        };
        let mut z =
            self.latents
                .tensor()
                .unsqueeze(0)?
                .broadcast_to(&[b, c.num_latents, c.latent_dim])?;
        // The cross-attends read one input: how (normalised once, keys and values projected
        // once per weight set at inference) is the attention crate's choice (`SharedKv`).
        let attends = c.num_cross_attends.min(c.num_blocks);
        let readers: Vec<(&MultiHeadAttention, &LayerNorm)> = (0..attends)
            .map(|blk| {
                let cross = &self.cross[self.plan.cross[blk]];
                (&cross.attn, &cross.norm_kv)
            })
            .collect();
        let parts: Vec<&Tensor> = std::iter::once(&x_in).chain(pos.as_ref()).collect();
        let mut kv = SharedKv::new(&parts, &readers, ctx.train)?;
        for blk in 0..c.num_blocks {
            if blk < attends {
                let cross = &self.cross[self.plan.cross[blk]];
                z = cross.forward(&z, &mut kv, opts.mask, &mut ctx)?;
            }
            for layer in &self.towers[self.plan.towers[blk]] {
                z = layer.forward(&z, &mut ctx)?;
            }
        }
        let logits = match &self.head {
            Head::None => z.clone(),
            Head::Classifier { norm, fc } => {
                let mut h = z.mean(&[1], false)?;
                if let Some(n) = norm {
                    h = n.forward(&h)?;
                }
                fc.forward(&h)?
            }
            Head::Decoder { queries, cross, fc } => {
                let q = match queries {
                    Queries::Trainable(p) => p.tensor(),
                    Queries::Fourier(t) => t.clone(),
                };
                let (nq, cq) = (q.shape()[0], q.shape()[1]);
                let q = q.unsqueeze(0)?.broadcast_to(&[b, nq, cq])?;
                let mut kv = SharedKv::new(&[&z], &[(&cross.attn, &cross.norm_kv)], ctx.train)?;
                let out = cross.forward(&q, &mut kv, None, &mut ctx)?;
                let y = fc.forward(&out)?;
                if nq == 1 {
                    let k = y.shape()[2];
                    y.reshape(&[b, k])?
                } else {
                    y
                }
            }
        };
        Ok(PerceiverOutput { logits, latents: z })
    }

    /// Replaces every parameter's value from `tensors` (canonical names). All problems —
    /// missing, unexpected and mis-shaped tensors — are collected and returned together;
    /// nothing is changed unless there are none.
    pub fn load_named(&self, tensors: &[(String, Tensor)], context: &str) -> Result<()> {
        let mut problems = Vec::new();
        let mut by_name: BTreeMap<&str, &Tensor> = BTreeMap::new();
        for (n, t) in tensors {
            if by_name.insert(n.as_str(), t).is_some() {
                problems.push(TensorProblem::Other {
                    name: n.clone(),
                    msg: "appears more than once".into(),
                });
            }
        }
        let ours: BTreeSet<&str> = self.params.names().collect();
        for p in self.params.iter() {
            match by_name.get(p.name()) {
                None => problems.push(TensorProblem::Missing {
                    name: p.name().to_string(),
                    expected: p.shape(),
                }),
                Some(t) if t.shape() != p.shape() => problems.push(TensorProblem::Shape {
                    name: p.name().to_string(),
                    expected: p.shape(),
                    found: t.shape().to_vec(),
                }),
                Some(_) => {}
            }
        }
        for (n, t) in &by_name {
            if !ours.contains(n) {
                problems.push(TensorProblem::Unexpected {
                    name: n.to_string(),
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
        for p in self.params.iter() {
            p.set(by_name[p.name()])?;
        }
        Ok(())
    }
}
