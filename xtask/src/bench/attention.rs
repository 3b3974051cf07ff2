//! Configuration C of `bench.md`: one pre-LayerNorm cross-attention block alone,
//! `z + Attn(LN(z), LN(x))` with latents 256 x 256, inputs N x 256, one head of width 256,
//! batch 1, at N = 16,384, 65,536 and 262,144; forward, and forward + backward with
//! `loss = sum(outputs)`. Every point runs in its own process; memory growth per input token is
//! measured from after the input is created (as `tools/torch_perceiver.py` does).

use super::{mark_setup_done, Group, Point, Work};
use perceiver_attn::{Call, KeyValues, MultiHeadAttention, MultiHeadAttentionConfig};
use perceiver_nn::LayerNorm;
use perceiver_nn::ParamStore;
use perceiver_tensor::{no_grad, Rng, Tensor};
use std::hint::black_box;

/// The `attention` group.
pub const GROUP: Group = Group {
    name: "attention",
    about: "config C: one cross-attention block (fused LayerNorm + K/V + flash attention), 1 process per point",
    isolated: true,
    points,
};

const L: usize = 256;
const D: usize = 256;

/// Forward FLOPs as `tools/torch_perceiver.py` counts them.
fn fwd_flops(n: usize) -> f64 {
    let (l, d, n) = (L as f64, D as f64, n as f64);
    2.0 * l * d * 256.0 + 2.0 * n * d * 512.0 + 2.0 * 2.0 * l * n * 256.0 + 2.0 * l * 256.0 * d
}

struct Block {
    latents: Tensor,
    ln_q: LayerNorm,
    ln_kv: LayerNorm,
    attn: MultiHeadAttention,
}

fn build() -> Block {
    let mut store = ParamStore::new();
    let mut rng = Rng::new(0);
    let latents = Tensor::randn(&[1, L, D], &mut rng).requires_grad();
    let ln_q = LayerNorm::new(&mut store, "ln_q", D, 1e-5).expect("fresh store");
    let ln_kv = LayerNorm::new(&mut store, "ln_kv", D, 1e-5).expect("fresh store");
    let cfg = MultiHeadAttentionConfig::lucidrains(D, D, 1, 256);
    let attn = MultiHeadAttention::new(&mut store, "attn", cfg, &mut rng).expect("fresh store");
    Block {
        latents,
        ln_q,
        ln_kv,
        attn,
    }
}

fn forward(b: &Block, x: &Tensor) -> Tensor {
    let q = b.ln_q.forward(&b.latents).expect("shapes agree");
    let a = b
        .attn
        .attend(
            &q,
            KeyValues::Rows {
                x,
                norm: Some(&b.ln_kv),
            },
            Call::default(),
        )
        .expect("shapes agree");
    b.latents.add(&a).expect("shapes agree")
}

fn points(quick: bool) -> Vec<Point> {
    let ns: &[usize] = if quick {
        &[16_384, 65_536]
    } else {
        &[16_384, 65_536, 262_144]
    };
    let mut out = Vec::new();
    for &n in ns {
        out.push(Point {
            name: "fwd".into(),
            shape: format!("N={n}"),
            note: "C forward".into(),
            work: Work::Flops(fwd_flops(n)),
            setup: Box::new(move || {
                let block = build();
                let x = Tensor::randn(&[1, n, D], &mut Rng::new(1));
                mark_setup_done(n);
                Box::new(move || {
                    let y = no_grad(|| forward(&block, &x));
                    black_box(y);
                })
            }),
        });
        out.push(Point {
            name: "fwd+bwd".into(),
            shape: format!("N={n}"),
            note: "C forward + backward (GFLOP/s counts 3x forward)".into(),
            work: Work::Flops(3.0 * fwd_flops(n)),
            setup: Box::new(move || {
                let block = build();
                let x = Tensor::randn(&[1, n, D], &mut Rng::new(1));
                mark_setup_done(n);
                Box::new(move || {
                    let y = forward(&block, &x).sum_all();
                    let g = y.backward().expect("tracked");
                    black_box(g);
                })
            }),
        });
    }
    out
}
