//! The multi-head attention layer the model uses.

use crate::{
    attention_reference, cross_attention_kv, flash_attention, fused_cross_attention_with,
    AttentionOptions, CrossKernel, KvProjection,
};
use perceiver_nn::ParamStore;
use perceiver_nn::{FusedOps, LayerNorm, Linear};
use perceiver_tensor::{Error, Result, Rng, Tensor};

/// Which attention kernel a layer runs. Every kernel computes the same attention (tested
/// against [`AttnKernel::Reference`]); they differ in speed and memory. Attention dropout runs
/// only on the reference kernel, so a call with dropout active runs that one whatever the
/// setting ([`MultiHeadAttention::kernel_for`]).
///
/// With the `serde` feature it is written in configs as `"fused"`, `"flash"`,
/// `"cross_projected"`, `"cross_folded"` or `"reference"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AttnKernel {
    /// The default: keys and values read through a LayerNorm go to the fused cross-attention
    /// ([`fused_cross_attention_with`], which normalises, projects and attends block by block
    /// and picks its projected or folded form by operation count, [`CrossKernel::Auto`]); other
    /// keys and values are projected whole and attended by the flash kernel.
    #[default]
    Fused,
    /// Keys and values projected whole, then the flash kernel ([`flash_attention`]).
    Flash,
    /// The fused cross-attention in its projected form ([`CrossKernel::Projected`]).
    CrossProjected,
    /// The fused cross-attention in its folded form ([`CrossKernel::Folded`]).
    CrossFolded,
    /// The composition of plain ops ([`attention_reference`]); the one with attention dropout.
    Reference,
}

impl AttnKernel {
    /// The fused cross-attention form this kernel runs, if it runs one.
    fn cross(self) -> Option<CrossKernel> {
        match self {
            AttnKernel::Fused => Some(CrossKernel::Auto),
            AttnKernel::CrossProjected => Some(CrossKernel::Projected),
            AttnKernel::CrossFolded => Some(CrossKernel::Folded),
            AttnKernel::Flash | AttnKernel::Reference => None,
        }
    }

    /// Whether it reads keys and values normalised before a LayerNorm's affine
    /// ([`KeyValues::Normalized`]) without building the normalised rows.
    pub fn reads_normalized(self) -> bool {
        self.cross().is_some()
    }
}

/// Where an attention layer's keys and values come from.
#[derive(Clone, Copy, Debug)]
pub enum KeyValues<'a> {
    /// Rows `[b, m, kv_dim]`, normalised by `norm` first when given (a cross-attend's `LN(x)`;
    /// `x` itself for self-attention of already normalised latents).
    Rows {
        /// The rows.
        x: &'a Tensor,
        /// The LayerNorm applied to them first.
        norm: Option<&'a LayerNorm>,
    },
    /// The rows normalised by `norm` before its affine (`x.layer_norm(None, None, norm.eps)`),
    /// so that several layers reading one input normalise it once and each applies its own
    /// affine.
    Normalized {
        /// The normalised rows `[b, m, kv_dim]`.
        x_bar: &'a Tensor,
        /// The LayerNorm whose affine applies.
        norm: &'a LayerNorm,
    },
    /// Keys `[b, m, qk_dim]` and values `[b, m, v_dim]` this layer's projections made
    /// ([`MultiHeadAttention::project_kv`]), kept to be attended several times at inference.
    Projected {
        /// The keys.
        k: &'a Tensor,
        /// The values.
        v: &'a Tensor,
    },
}

/// The settings of one attention call.
#[derive(Debug, Default)]
pub struct Call<'a> {
    /// Key padding mask `[b, m]` (non-zero = attend).
    pub mask: Option<&'a Tensor>,
    /// Training mode: attention dropout applies when the layer has a positive dropout.
    pub train: bool,
    /// The random numbers for attention dropout (needed when it applies).
    pub rng: Option<&'a mut Rng>,
    /// Added to the output in the output projection's epilogue (`[b, n, out_dim]`).
    pub residual: Option<&'a Tensor>,
}

/// Shape and options of a [`MultiHeadAttention`] layer.
///
/// ```
/// use perceiver_attn::{MultiHeadAttention, MultiHeadAttentionConfig};
/// use perceiver_nn::ParamStore;
/// use perceiver_tensor::Rng;
/// // Queries of width 8, keys/values of width 5, 2 heads of width 4, output back to 8.
/// let cfg = MultiHeadAttentionConfig::lucidrains(8, 5, 2, 4);
/// assert_eq!((cfg.qk_dim, cfg.v_dim, cfg.out_dim), (8, 8, 8));
/// assert!(!cfg.bias_q && !cfg.bias_k && !cfg.bias_v && cfg.bias_o);
/// let (mut store, mut rng) = (ParamStore::new(), Rng::new(0));
/// MultiHeadAttention::new(&mut store, "attn", cfg.clone(), &mut rng)?;
/// // to_q 8x8, to_k 8x5, to_v 8x5, to_out 8x8 + a bias of 8.
/// assert_eq!(store.numel(), 64 + 40 + 40 + 64 + 8);
/// assert!(store.get("attn.to_q.bias").is_none());
/// // Widths that do not split over the heads are refused.
/// let bad = MultiHeadAttentionConfig { heads: 3, ..cfg };
/// assert!(MultiHeadAttention::new(&mut ParamStore::new(), "bad", bad, &mut rng).is_err());
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAttentionConfig {
    /// Width of the query input (the latents).
    pub query_dim: usize,
    /// Width of the key/value input (the byte array, or the latents for self-attention).
    pub kv_dim: usize,
    /// Number of heads.
    pub heads: usize,
    /// Total width of queries and keys (`heads x head width`).
    pub qk_dim: usize,
    /// Total width of values (`heads x value head width`).
    pub v_dim: usize,
    /// Width of the output projection.
    pub out_dim: usize,
    /// Bias on the query projection.
    pub bias_q: bool,
    /// Bias on the key projection.
    pub bias_k: bool,
    /// Bias on the value projection.
    pub bias_v: bool,
    /// Bias on the output projection.
    pub bias_o: bool,
    /// Dropout on the attention probabilities (reference kernel only).
    pub dropout: f32,
    /// Kernel selection.
    pub kernel: AttnKernel,
    /// Logit scale; `None` = `1 / sqrt(qk head width)`.
    pub scale: Option<f32>,
}

impl MultiHeadAttentionConfig {
    /// A config with lucidrains' conventions: no bias on Q/K/V, bias on the output,
    /// `inner = heads * head_dim` for both qk and v, output back to `query_dim`.
    pub fn lucidrains(query_dim: usize, kv_dim: usize, heads: usize, head_dim: usize) -> Self {
        MultiHeadAttentionConfig {
            query_dim,
            kv_dim,
            heads,
            qk_dim: heads * head_dim,
            v_dim: heads * head_dim,
            out_dim: query_dim,
            bias_q: false,
            bias_k: false,
            bias_v: false,
            bias_o: true,
            dropout: 0.0,
            kernel: AttnKernel::Fused,
            scale: None,
        }
    }
}

/// Multi-head attention: `out = W_o · concat_h(attn(W_q x_q, W_k x_kv, W_v x_kv))`.
///
/// Parameters are named `{name}.to_q`, `{name}.to_k`, `{name}.to_v`, `{name}.to_out`
/// (`.weight`, `.bias`), with PyTorch layouts.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// The configuration.
    pub config: MultiHeadAttentionConfig,
    /// Query projection.
    pub to_q: Linear,
    /// Key projection.
    pub to_k: Linear,
    /// Value projection.
    pub to_v: Linear,
    /// Output projection.
    pub to_out: Linear,
}

impl MultiHeadAttention {
    /// Creates the layer's parameters in `store` under `name`.
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        config: MultiHeadAttentionConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        let c = &config;
        if c.heads == 0 || !c.qk_dim.is_multiple_of(c.heads) || !c.v_dim.is_multiple_of(c.heads) {
            return Err(Error::invalid(
                "MultiHeadAttention",
                format!(
                    "{name}: qk width {} and v width {} must be positive multiples of heads {}",
                    c.qk_dim, c.v_dim, c.heads
                ),
            ));
        }
        if !(0.0..1.0).contains(&c.dropout) {
            return Err(Error::invalid(
                "MultiHeadAttention",
                format!("{name}: dropout must be in [0, 1), got {}", c.dropout),
            ));
        }
        let to_q = Linear::new(
            store,
            &format!("{name}.to_q"),
            c.query_dim,
            c.qk_dim,
            c.bias_q,
            rng,
        )?;
        let to_k = Linear::new(
            store,
            &format!("{name}.to_k"),
            c.kv_dim,
            c.qk_dim,
            c.bias_k,
            rng,
        )?;
        let to_v = Linear::new(
            store,
            &format!("{name}.to_v"),
            c.kv_dim,
            c.v_dim,
            c.bias_v,
            rng,
        )?;
        let to_out = Linear::new(
            store,
            &format!("{name}.to_out"),
            c.v_dim,
            c.out_dim,
            c.bias_o,
            rng,
        )?;
        Ok(MultiHeadAttention {
            config,
            to_q,
            to_k,
            to_v,
            to_out,
        })
    }

    /// Splits `[b, len, heads * w]` into the view `[b, heads, len, w]` (no copy).
    fn heads_view(&self, x: &Tensor, width: usize) -> Result<Tensor> {
        let (b, len) = (x.shape()[0], x.shape()[1]);
        let h = self.config.heads;
        x.reshape(&[b, len, h, width / h])?.permute(&[0, 2, 1, 3])
    }

    /// The one entry point: attends from `x_q: [b, n, query_dim]` to the keys and values `kv`
    /// describes (see [`KeyValues`]), with the call's mask, mode and residual (see [`Call`]).
    /// Returns `[b, n, out_dim]` (plus the residual, added in the output projection's epilogue:
    /// a pre-LayerNorm block's `z + Attn(LN(z))`).
    ///
    /// The kernel is [`MultiHeadAttention::kernel_for`] the call's mode: the configured one,
    /// or the reference kernel when attention dropout applies. Each form of keys and values
    /// runs on every kernel: where a kernel cannot read a form directly (normalised rows on a
    /// kernel that projects whole keys, say), the plain composition runs instead.
    ///
    /// ```
    /// use perceiver_attn::{Call, KeyValues, MultiHeadAttention, MultiHeadAttentionConfig};
    /// use perceiver_nn::{LayerNorm, ParamStore};
    /// use perceiver_tensor::{Rng, Tensor};
    /// let (mut store, mut rng) = (ParamStore::new(), Rng::new(0));
    /// let cfg = MultiHeadAttentionConfig::lucidrains(8, 5, 2, 4);
    /// let attn = MultiHeadAttention::new(&mut store, "cross", cfg, &mut rng)?;
    /// let norm = LayerNorm::new(&mut store, "norm", 5, 1e-5)?;
    /// let (z, x) = (Tensor::randn(&[2, 3, 8], &mut rng), Tensor::randn(&[2, 20, 5], &mut rng));
    /// let kv = KeyValues::Rows { x: &x, norm: Some(&norm) };
    /// let out = attn.attend(&z, kv, Call::default())?;
    /// assert_eq!(out.shape(), &[2, 3, 8]);
    /// # Ok::<(), perceiver_tensor::Error>(())
    /// ```
    #[track_caller]
    pub fn attend(&self, x_q: &Tensor, kv: KeyValues<'_>, call: Call<'_>) -> Result<Tensor> {
        let c = &self.config;
        let batch = x_q.shape().first().copied();
        let (rows, kv_shape) = match kv {
            KeyValues::Rows { x, .. } => (x, x.shape()),
            KeyValues::Normalized { x_bar, .. } => (x_bar, x_bar.shape()),
            KeyValues::Projected { k, .. } => (k, k.shape()),
        };
        let width_ok = match kv {
            KeyValues::Projected { k, v } => {
                k.rank() == 3
                    && v.rank() == 3
                    && k.shape()[2] == c.qk_dim
                    && v.shape()[2] == c.v_dim
                    && v.shape()[..2] == k.shape()[..2]
            }
            _ => rows.rank() == 3 && rows.shape()[2] == c.kv_dim,
        };
        if x_q.rank() != 3
            || x_q.shape()[2] != c.query_dim
            || !width_ok
            || kv_shape.first().copied() != batch
        {
            return Err(Error::shape(
                "MultiHeadAttention",
                format!(
                    "queries must be [batch, queries, {}] and keys/values [batch, keys, {}] (or \
                     projected keys [batch, keys, {}] and values [batch, keys, {}])",
                    c.query_dim, c.kv_dim, c.qk_dim, c.v_dim
                ),
                x_q.shape(),
                kv_shape,
            ));
        }
        let kernel = self.kernel_for(call.train);
        match kv {
            KeyValues::Projected { k, v } => self.attend_projected(x_q, k, v, kernel, call),
            KeyValues::Normalized { x_bar, norm } => match kernel.cross() {
                Some(ck) => self.fused_cross(x_q, x_bar, Some(norm), true, ck, call),
                None => {
                    let rows = x_bar.mul(&norm.weight.tensor())?.add(&norm.bias.tensor())?;
                    self.attend_rows(x_q, &rows, kernel, call)
                }
            },
            KeyValues::Rows { x, norm } => match (kernel.cross(), norm) {
                // LN(x), K and V block by block: nothing stored per input token.
                (Some(ck), Some(ln)) => self.fused_cross(x_q, x, Some(ln), false, ck, call),
                // Without a LayerNorm only an explicit cross kernel is asked for here; the
                // default projects whole keys and values (self-attention of the latents).
                (Some(ck), None) if kernel != AttnKernel::Fused => {
                    self.fused_cross(x_q, x, None, false, ck, call)
                }
                (_, Some(ln)) => self.attend_rows(x_q, &ln.forward(x)?, kernel, call),
                (_, None) => self.attend_rows(x_q, x, kernel, call),
            },
        }
    }

    /// The kernel a call runs: the configured one, or [`AttnKernel::Reference`] when attention
    /// dropout applies (`train` and a positive dropout): the only kernel that has it.
    pub fn kernel_for(&self, train: bool) -> AttnKernel {
        if train && self.config.dropout > 0.0 {
            AttnKernel::Reference
        } else {
            self.config.kernel
        }
    }

    /// `[b, heads, n, qk head width]`: the projected queries.
    fn queries(&self, x_q: &Tensor) -> Result<Tensor> {
        self.heads_view(&self.to_q.forward(x_q)?, self.config.qk_dim)
    }

    /// The options of the reference kernel for `call`: this layer's scale and dropout.
    fn reference_options(&self, call: &Call<'_>) -> AttentionOptions {
        AttentionOptions {
            scale: self.config.scale,
            dropout: self.config.dropout,
            train: call.train,
        }
    }

    /// Keys and values projected whole from `rows`, then the flash or the reference kernel.
    fn attend_rows(
        &self,
        x_q: &Tensor,
        rows: &Tensor,
        kernel: AttnKernel,
        call: Call<'_>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let q = self.queries(x_q)?;
        let (k, v) = self.project_kv(rows, None)?;
        let (k, v) = (
            self.heads_view(&k, c.qk_dim)?,
            self.heads_view(&v, c.v_dim)?,
        );
        let o = if kernel == AttnKernel::Reference {
            let opts = self.reference_options(&call);
            attention_reference(&q, &k, &v, call.mask, &opts, call.rng)?
        } else {
            flash_attention(&q, &k, &v, call.mask, c.scale)?
        };
        self.project_out(&o, x_q, call.residual)
    }

    /// Keys and values already projected: the fused kernel's forward-only attention
    /// ([`cross_attention_kv`], which refuses inputs tracked by autograd), or the plain ops.
    fn attend_projected(
        &self,
        x_q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        kernel: AttnKernel,
        call: Call<'_>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let q = self.queries(x_q)?;
        let o = if kernel == AttnKernel::Reference {
            let opts = self.reference_options(&call);
            let (k, v) = (self.heads_view(k, c.qk_dim)?, self.heads_view(v, c.v_dim)?);
            attention_reference(&q, &k, &v, call.mask, &opts, call.rng)?
        } else {
            cross_attention_kv(&q, k, v, c.heads, call.mask, c.scale)?
        };
        self.project_out(&o, x_q, call.residual)
    }

    /// The keys and values `[b, m, heads · head width]` of a key/value input `x_kv: [b, m,
    /// kv_dim]`, for a caller that attends to one input several times with these weights (a
    /// Perceiver's weight-shared cross-attends at inference) and passes them to
    /// [`MultiHeadAttention::attend`] as [`KeyValues::Projected`]. With `prenormed = Some(ln)`, `x_kv` holds `ln`'s
    /// normalised rows before its affine (as for
    /// [`KeyValues::Normalized`]); the affine is folded into the
    /// projections (`W·diag(γ)`, bias `W·β + b`), so the normalised input is not built.
    #[track_caller]
    pub fn project_kv(
        &self,
        x_kv: &Tensor,
        prenormed: Option<&LayerNorm>,
    ) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        if x_kv.rank() != 3 || x_kv.shape()[2] != c.kv_dim {
            return Err(Error::shape(
                "MultiHeadAttention",
                format!("the key/value input must be [batch, keys, {}]", c.kv_dim),
                x_kv.shape(),
                &[c.kv_dim],
            ));
        }
        let project = |layer: &Linear, width: usize| -> Result<Tensor> {
            let out = match prenormed {
                None => layer.forward(x_kv)?,
                Some(ln) => {
                    let w = layer.weight.tensor();
                    let folded_w = w.mul(&ln.weight.tensor())?;
                    let mut folded_b = w
                        .matmul(&ln.bias.tensor().unsqueeze(1)?)?
                        .reshape(&[width])?;
                    if let Some(b) = &layer.bias {
                        folded_b = folded_b.add(&b.tensor())?;
                    }
                    x_kv.linear(&folded_w, Some(&folded_b), None)?
                }
            };
            Ok(out)
        };
        Ok((
            project(&self.to_k, c.qk_dim)?,
            project(&self.to_v, c.v_dim)?,
        ))
    }

    /// `W_o·o + b_o` (plus the residual) for `o: [b, heads, n, v head width]`.
    fn project_out(&self, o: &Tensor, x_q: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (b, n) = (x_q.shape()[0], x_q.shape()[1]);
        let o = o
            .permute(&[0, 2, 1, 3])?
            .reshape(&[b, n, self.config.v_dim])?;
        match residual {
            Some(r) => self.to_out.forward_add(&o, r),
            None => self.to_out.forward(&o),
        }
    }

    /// The fused cross-attention ([`fused_cross_attention_with`]) of `x_kv` through `kv_norm`
    /// (`normalized`: `x_kv` holds its rows before the affine).
    fn fused_cross(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        kv_norm: Option<&LayerNorm>,
        normalized: bool,
        kernel: CrossKernel,
        call: Call<'_>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let q = self.queries(x_q)?;
        let (lw, lb) = match kv_norm {
            Some(ln) => (Some(ln.weight.tensor()), Some(ln.bias.tensor())),
            None => (None, None),
        };
        let wk = self.to_k.weight.tensor();
        let wv = self.to_v.weight.tensor();
        let bk = self.to_k.bias.as_ref().map(|b| b.tensor());
        let bv = self.to_v.bias.as_ref().map(|b| b.tensor());
        let proj = KvProjection {
            norm: kv_norm.map(|ln| (lw.as_ref(), lb.as_ref(), ln.eps)),
            normalized,
            wk: &wk,
            bk: bk.as_ref(),
            wv: &wv,
            bv: bv.as_ref(),
        };
        let o = fused_cross_attention_with(&q, x_kv, proj, c.heads, call.mask, c.scale, kernel)?;
        self.project_out(&o, x_q, call.residual)
    }
}
