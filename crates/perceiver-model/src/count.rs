//! Parameter and FLOP counts computed from the configuration alone (no allocation), so they
//! are cheap even for the 326M-parameter unshared ImageNet model.
//!
//! # What the FLOP count counts
//! Per example, forward only:
//! - every matrix product `[m, k] x [k, n]` counts `2·m·k·n` (a multiply and an add);
//! - every elementwise step counts 1 FLOP per output element: bias adds, residual adds,
//!   LayerNorm (per normalised element), softmax (per attention logit), the activation (GELU;
//!   GEGLU counts its GELU and its product), the mean over latents;
//! - not counted: the Fourier features (input-independent and cached), reshapes and
//!   concatenations, the logit scale (folded into the product), the loss.
//!
//! With this rule the ImageNet Perceiver of the paper comes out at 707.2 GFLOPs, the figure
//! the paper gives (of which 706.3 G are matrix products).

use crate::config::{
    AttnDims, FeedForwardConfig, FeedForwardKind, HeadConfig, PerceiverConfig, QueryConfig,
};

/// A FLOP count with its parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlopCount {
    /// Matrix-product FLOPs (2 per multiply-add).
    pub matmul: u64,
    /// Elementwise FLOPs (1 per output element per step).
    pub elementwise: u64,
    /// Per component (`cross-attend 0`, `tower 0`, `head`, ...): matmul + elementwise.
    pub parts: Vec<(String, u64)>,
}

impl FlopCount {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.matmul + self.elementwise
    }

    fn add(&mut self, name: impl Into<String>, c: Cost) {
        self.matmul += c.matmul;
        self.elementwise += c.elementwise;
        self.parts.push((name.into(), c.matmul + c.elementwise));
    }
}

#[derive(Clone, Copy, Default)]
struct Cost {
    matmul: u64,
    elementwise: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            matmul: self.matmul + o.matmul,
            elementwise: self.elementwise + o.elementwise,
        }
    }
}

impl std::ops::Mul<u64> for Cost {
    type Output = Cost;
    fn mul(self, k: u64) -> Cost {
        Cost {
            matmul: self.matmul * k,
            elementwise: self.elementwise * k,
        }
    }
}

fn u(x: usize) -> u64 {
    x as u64
}

/// `rows` queries attending `keys` keys, including the LayerNorms on both inputs
/// (`norm_kv` = false for self-attention, whose keys are the normalised queries).
fn attention_cost(
    c: &PerceiverConfig,
    d: AttnDims,
    rows: usize,
    keys: usize,
    norm_kv: bool,
    residual: bool,
) -> Cost {
    let (n, m) = (u(rows), u(keys));
    let (qi, ki, qk, v, o, h) = (u(d.q_in), u(d.kv_in), u(d.qk), u(d.v), u(d.out), u(d.heads));
    let matmul = 2 * n * qi * qk
        + 2 * m * ki * qk
        + 2 * m * ki * v
        + 2 * n * m * qk
        + 2 * n * m * v
        + 2 * n * v * o;
    let b = &c.bias;
    let mut e = n * qi + if norm_kv { m * ki } else { 0 } + h * n * m;
    e += if b.q { n * qk } else { 0 } + if b.k { m * qk } else { 0 } + if b.v { m * v } else { 0 };
    e += if b.out { n * o } else { 0 };
    if residual {
        e += n * o;
    }
    Cost {
        matmul,
        elementwise: e,
    }
}

fn ff_cost(c: &PerceiverConfig, ff: &FeedForwardConfig, rows: usize, dim: usize) -> Cost {
    let (h1, h2) = ff.hidden(dim);
    let (n, d, h1, h2) = (u(rows), u(dim), u(h1), u(h2));
    let act = match ff.kind {
        FeedForwardKind::Gelu => n * h2,
        FeedForwardKind::Geglu => 2 * n * h2,
    };
    let bias = if c.bias.ff { n * h1 + n * d } else { 0 };
    Cost {
        matmul: 2 * n * d * h1 + 2 * n * h2 * d,
        elementwise: n * d + act + bias + n * d,
    }
}

fn linear_shapes(out: &mut Vec<(String, Vec<usize>)>, name: &str, i: usize, o: usize, bias: bool) {
    out.push((format!("{name}.weight"), vec![o, i]));
    if bias {
        out.push((format!("{name}.bias"), vec![o]));
    }
}

fn norm_shapes(out: &mut Vec<(String, Vec<usize>)>, name: &str, dim: usize) {
    out.push((format!("{name}.weight"), vec![dim]));
    out.push((format!("{name}.bias"), vec![dim]));
}

fn attn_shapes(out: &mut Vec<(String, Vec<usize>)>, c: &PerceiverConfig, name: &str, d: AttnDims) {
    let b = &c.bias;
    linear_shapes(out, &format!("{name}.to_q"), d.q_in, d.qk, b.q);
    linear_shapes(out, &format!("{name}.to_k"), d.kv_in, d.qk, b.k);
    linear_shapes(out, &format!("{name}.to_v"), d.kv_in, d.v, b.v);
    linear_shapes(out, &format!("{name}.to_out"), d.v, d.out, b.out);
}

fn ff_shapes(
    out: &mut Vec<(String, Vec<usize>)>,
    c: &PerceiverConfig,
    name: &str,
    ff: &FeedForwardConfig,
    dim: usize,
) {
    let (h1, h2) = ff.hidden(dim);
    norm_shapes(out, &format!("{name}.norm"), dim);
    linear_shapes(out, &format!("{name}.fc1"), dim, h1, c.bias.ff);
    linear_shapes(out, &format!("{name}.fc2"), h2, dim, c.bias.ff);
}

/// A cross-attend block's parameters under `name` (`norm_q`, `norm_kv`, `attn.*`, `ff.*`).
fn cross_shapes(
    out: &mut Vec<(String, Vec<usize>)>,
    c: &PerceiverConfig,
    name: &str,
    d: AttnDims,
    ff: &FeedForwardConfig,
) {
    norm_shapes(out, &format!("{name}.norm_q"), d.q_in);
    norm_shapes(out, &format!("{name}.norm_kv"), d.kv_in);
    attn_shapes(out, c, &format!("{name}.attn"), d);
    ff_shapes(out, c, &format!("{name}.ff"), ff, d.out);
}

impl PerceiverConfig {
    /// Every parameter's canonical name and shape, in build order, without allocating
    /// tensors. A shared set appears once.
    ///
    /// Names: `latents`, `pos.*`, `cross.{set}.{norm_q,norm_kv,attn.to_{q,k,v,out},ff.{norm,fc1,fc2}}.{weight,bias}`,
    /// `self.{set}.{layer}.{norm,attn.*,ff.*}`, `head.{norm,fc}`, `decoder.query`,
    /// `decoder.cross.*`, `decoder.fc`.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for (n, s) in self
            .position_encoding
            .param_shapes(&self.input_axes, self.position_projection)
        {
            out.push((format!("pos.{n}"), s));
        }
        out.push((
            "latents".to_string(),
            vec![self.num_latents, self.latent_dim],
        ));
        let plan = self.sharing_plan();
        for s in 0..plan.num_cross_sets() {
            cross_shapes(
                &mut out,
                self,
                &format!("cross.{s}"),
                self.cross_dims(),
                &self.cross_feed_forward,
            );
        }
        let sd = self.self_dims();
        for s in 0..plan.num_tower_sets() {
            for j in 0..self.self_per_block {
                let name = format!("self.{s}.{j}");
                norm_shapes(&mut out, &format!("{name}.norm"), sd.q_in);
                attn_shapes(&mut out, self, &format!("{name}.attn"), sd);
                ff_shapes(
                    &mut out,
                    self,
                    &format!("{name}.ff"),
                    &self.self_feed_forward,
                    sd.out,
                );
            }
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier {
                num_classes,
                layer_norm,
            } => {
                if *layer_norm {
                    norm_shapes(&mut out, "head.norm", self.latent_dim);
                }
                linear_shapes(&mut out, "head.fc", self.latent_dim, *num_classes, true);
            }
            HeadConfig::Decoder(d) => {
                let dims = self.decoder_dims().expect("decoder head");
                if let QueryConfig::Trainable {
                    num_queries,
                    channels,
                    ..
                } = &d.query
                {
                    out.push(("decoder.query".to_string(), vec![*num_queries, *channels]));
                }
                cross_shapes(&mut out, self, "decoder.cross", dims, &d.feed_forward);
                linear_shapes(&mut out, "decoder.fc", dims.out, d.num_outputs, true);
            }
        }
        out
    }

    /// Number of scalar parameters (shared sets counted once), from the configuration alone.
    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Forward FLOPs for one example on the configured input axes (see the module docs for
    /// what is counted).
    pub fn flops_per_example(&self) -> FlopCount {
        let mut f = FlopCount::default();
        let m = self.input_tokens();
        let (n, dl) = (self.num_latents, self.latent_dim);
        if let Some(p) = self.position_projection {
            let raw = self.position_encoding.raw_channels(self.input_axes.len());
            if raw > 0 {
                f.add(
                    "position projection",
                    Cost {
                        matmul: 2 * u(m) * u(raw) * u(p),
                        elementwise: u(m) * u(p),
                    },
                );
            }
        }
        let cross = attention_cost(self, self.cross_dims(), n, m, true, self.query_residual)
            + ff_cost(self, &self.cross_feed_forward, n, dl);
        let layer = attention_cost(self, self.self_dims(), n, n, false, true)
            + ff_cost(self, &self.self_feed_forward, n, dl);
        for b in 0..self.num_blocks {
            if b < self.num_cross_attends {
                f.add(format!("cross-attend {b}"), cross);
            }
            if self.self_per_block > 0 {
                f.add(format!("latent tower {b}"), layer * u(self.self_per_block));
            }
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier {
                num_classes,
                layer_norm,
            } => {
                let k = u(*num_classes);
                let d = u(dl);
                f.add(
                    "head",
                    Cost {
                        matmul: 2 * d * k,
                        elementwise: u(n) * d + if *layer_norm { d } else { 0 } + k,
                    },
                );
            }
            HeadConfig::Decoder(dec) => {
                let dims = self.decoder_dims().expect("decoder head");
                let (q, _) = dec.query.shape();
                let k = u(dec.num_outputs);
                let c = attention_cost(self, dims, q, n, true, dec.query_residual)
                    + ff_cost(self, &dec.feed_forward, q, dims.out)
                    + Cost {
                        matmul: 2 * u(q) * u(dims.out) * k,
                        elementwise: u(q) * k,
                    };
                f.add("decoder", c);
            }
        }
        f
    }
}
