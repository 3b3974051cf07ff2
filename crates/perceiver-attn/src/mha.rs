//! The multi-head attention layer the model uses.

use crate::{
    attention_reference, cross_attention_kv, flash_attention, fused_cross_attention,
    AttentionOptions, KvProjection,
};
use perceiver_nn::ParamStore;
use perceiver_nn::{FusedOps, LayerNorm, Linear};
use perceiver_tensor::{Error, Result, Rng, Tensor};

/// Which attention kernel a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttnKernel {
    /// The fused, memory-linear kernel ([`flash_attention`]). The default.
    #[default]
    Fused,
    /// The composition of plain ops ([`attention_reference`]); needed for attention dropout.
    Reference,
}

/// Shape and options of a [`MultiHeadAttention`] layer.
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

    /// Attends from `x_q: [b, n, query_dim]` to `x_kv: [b, m, kv_dim]` with an optional key
    /// padding mask `[b, m]` (non-zero = attend). Returns `[b, n, out_dim]`.
    ///
    /// Attention dropout is applied when `train` and the config's dropout is positive; it needs
    /// the reference kernel and an `rng`, and the fused kernel refuses it with an error.
    #[track_caller]
    pub fn forward(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        self.forward_add(x_q, x_kv, mask, train, rng, None)
    }

    /// [`MultiHeadAttention::forward`] plus `residual` (`[b, n, out_dim]`), added in the output
    /// projection's epilogue ([`Linear::forward_add`]) instead of by a separate op: a
    /// pre-LayerNorm block's `z + Attn(LN(z))`.
    #[track_caller]
    pub fn forward_add(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        rng: Option<&mut Rng>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = &self.config;
        if x_q.rank() != 3 || x_kv.rank() != 3 || x_q.shape()[0] != x_kv.shape()[0] {
            return Err(Error::shape(
                "MultiHeadAttention",
                "inputs must be [batch, queries, query_dim] and [batch, keys, kv_dim] with the same batch",
                x_q.shape(),
                x_kv.shape(),
            ));
        }
        let q = self.heads_view(&self.to_q.forward(x_q)?, c.qk_dim)?;
        let (k, v) = self.project_kv(x_kv, None)?;
        let (k, v) = (
            self.heads_view(&k, c.qk_dim)?,
            self.heads_view(&v, c.v_dim)?,
        );
        let dropout = train && c.dropout > 0.0;
        let o = match c.kernel {
            AttnKernel::Fused if dropout => {
                return Err(Error::invalid(
                    "MultiHeadAttention",
                    "the fused attention kernel does not support dropout on attention probabilities; select AttnKernel::Reference",
                ))
            }
            AttnKernel::Fused => flash_attention(&q, &k, &v, mask, c.scale)?,
            AttnKernel::Reference => {
                let opts = AttentionOptions { scale: c.scale, dropout: c.dropout, train };
                attention_reference(&q, &k, &v, mask, &opts, rng)?
            }
        };
        self.project_out(&o, x_q, residual)
    }

    /// The keys and values `[b, m, heads · head width]` of a key/value input `x_kv: [b, m,
    /// kv_dim]`, for a caller that attends to one input several times with these weights (a
    /// Perceiver's weight-shared cross-attends at inference) and passes them to
    /// [`MultiHeadAttention::forward_kv_add`]. With `prenormed = Some(ln)`, `x_kv` holds `ln`'s
    /// normalised rows before its affine (as for
    /// [`MultiHeadAttention::forward_prenormed_kv_add`]); the affine is folded into the
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

    /// Attends from `x_q: [b, n, query_dim]` to keys and values from
    /// [`MultiHeadAttention::project_kv`], plus `residual` (as in
    /// [`MultiHeadAttention::forward_add`]). Meant for inference: the fused kernel
    /// ([`cross_attention_kv`]) refuses inputs tracked by autograd (the reference kernel
    /// records gradients as usual); no attention dropout either way.
    #[track_caller]
    pub fn forward_kv_add(
        &self,
        x_q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = &self.config;
        if x_q.rank() != 3 {
            return Err(Error::shape(
                "MultiHeadAttention",
                "queries must be [batch, queries, query_dim]",
                x_q.shape(),
                &[c.query_dim],
            ));
        }
        let q = self.heads_view(&self.to_q.forward(x_q)?, c.qk_dim)?;
        let o = match c.kernel {
            AttnKernel::Fused => cross_attention_kv(&q, k, v, c.heads, mask, c.scale)?,
            AttnKernel::Reference => {
                let opts = AttentionOptions {
                    scale: c.scale,
                    dropout: c.dropout,
                    train: false,
                };
                let (k, v) = (self.heads_view(k, c.qk_dim)?, self.heads_view(v, c.v_dim)?);
                attention_reference(&q, &k, &v, mask, &opts, None)?
            }
        };
        self.project_out(&o, x_q, residual)
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

    /// Like [`MultiHeadAttention::forward`], with a LayerNorm applied to the key/value input
    /// first: `attn(x_q, kv_norm(x_kv))`. With the fused kernel (and no dropout) the
    /// normalisation, the K/V projections and the attention run as one block-wise kernel
    /// ([`fused_cross_attention`]), so memory stays constant per input token; otherwise the plain
    /// composition runs.
    #[track_caller]
    pub fn forward_normed_kv(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        kv_norm: Option<&LayerNorm>,
        mask: Option<&Tensor>,
        train: bool,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        self.forward_normed_kv_add(x_q, x_kv, kv_norm, mask, train, rng, None)
    }

    /// [`MultiHeadAttention::forward_normed_kv`] plus `residual` (`[b, n, out_dim]`), added in
    /// the output projection's epilogue (see [`MultiHeadAttention::forward_add`]).
    #[track_caller]
    #[allow(clippy::too_many_arguments)] // the arguments of forward_normed_kv, plus one
    pub fn forward_normed_kv_add(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        kv_norm: Option<&LayerNorm>,
        mask: Option<&Tensor>,
        train: bool,
        rng: Option<&mut Rng>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if !self.runs_fused(train) {
            let normed = match kv_norm {
                Some(ln) => ln.forward(x_kv)?,
                None => x_kv.clone(),
            };
            return self.forward_add(x_q, &normed, mask, train, rng, residual);
        }
        self.fused_cross(x_q, x_kv, kv_norm, false, mask, residual)
    }

    /// Whether [`MultiHeadAttention::forward_normed_kv`] runs the fused kernel: the layer
    /// selects it and no attention dropout applies (`train` with a positive dropout).
    pub fn runs_fused(&self, train: bool) -> bool {
        self.config.kernel == AttnKernel::Fused && !(train && self.config.dropout > 0.0)
    }

    /// Like [`MultiHeadAttention::forward_normed_kv_add`] with `x_bar` holding `kv_norm`'s
    /// normalised rows of the key/value input before its affine (`x.layer_norm(None, None,
    /// kv_norm.eps)`): the fused kernel applies only the affine ([`KvProjection::normalized`]),
    /// so several cross-attends to one input normalise it once. Only where the fused kernel
    /// runs ([`MultiHeadAttention::runs_fused`] for `train`); an error otherwise.
    #[track_caller]
    pub fn forward_prenormed_kv_add(
        &self,
        x_q: &Tensor,
        x_bar: &Tensor,
        kv_norm: &LayerNorm,
        mask: Option<&Tensor>,
        train: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if !self.runs_fused(train) {
            return Err(Error::invalid(
                "MultiHeadAttention",
                "normalised key/value inputs need the fused kernel (and no attention dropout in training); use forward_normed_kv",
            ));
        }
        self.fused_cross(x_q, x_bar, Some(kv_norm), true, mask, residual)
    }

    /// The fused cross-attention path of [`MultiHeadAttention::forward_normed_kv_add`].
    fn fused_cross(
        &self,
        x_q: &Tensor,
        x_kv: &Tensor,
        kv_norm: Option<&LayerNorm>,
        normalized: bool,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = &self.config;
        if x_q.rank() != 3 || x_kv.rank() != 3 || x_q.shape()[0] != x_kv.shape()[0] {
            return Err(Error::shape(
                "MultiHeadAttention",
                "inputs must be [batch, queries, query_dim] and [batch, keys, kv_dim] with the same batch",
                x_q.shape(),
                x_kv.shape(),
            ));
        }
        if x_kv.shape()[2] != c.kv_dim {
            return Err(Error::shape(
                "MultiHeadAttention",
                format!("the key/value input must have {} channels", c.kv_dim),
                x_kv.shape(),
                &[c.kv_dim],
            ));
        }
        let q = self.heads_view(&self.to_q.forward(x_q)?, c.qk_dim)?;
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
        let o = fused_cross_attention(&q, x_kv, proj, c.heads, mask, c.scale)?;
        self.project_out(&o, x_q, residual)
    }
}
