//! The fused LayerNorm + K/V projection + attention kernel against the composition of plain ops.

use perceiver_attn::{
    attention_reference, fused_cross_attention, fused_cross_attention_with, AttentionOptions,
    CrossKernel, KvProjection,
};
use perceiver_tensor::{Result, Rng, Tensor};

mod common;
use common::rel_err_floor as rel_err;

struct Case {
    b: usize,
    heads: usize,
    n: usize,
    m: usize,
    c: usize,
    dh: usize,
    dv: usize,
    norm: bool,
    biases: bool,
    mask: bool,
    strided_x: bool,
}

/// Both kernels against the composition, with and without a gradient for the input `x` (the
/// folded kernel skips the per-token input gradient when none is needed; image pixels and
/// their position features need none), and with a LayerNorm, also fed the normalised rows
/// ([`KvProjection::normalized`]).
fn run(case: &Case, seed: u64) -> Result<()> {
    for x_grad in [true, false] {
        for kernel in [CrossKernel::Projected, CrossKernel::Folded] {
            run_kernel(case, seed, kernel, x_grad, false)?;
            if case.norm {
                run_kernel(case, seed, kernel, x_grad, true)?;
            }
        }
    }
    Ok(())
}

fn run_kernel(
    case: &Case,
    seed: u64,
    kernel: CrossKernel,
    x_grad: bool,
    normalized: bool,
) -> Result<()> {
    let Case {
        b,
        heads,
        n,
        m,
        c,
        dh,
        dv,
        ..
    } = *case;
    let mut rng = Rng::new(seed);
    let q = Tensor::randn(&[b, heads, n, dh], &mut rng);
    let x = if case.strided_x {
        Tensor::randn(&[m, b, c], &mut rng).permute(&[1, 0, 2])?
    } else {
        Tensor::randn(&[b, m, c], &mut rng)
    };
    let lnw = Tensor::randn(&[c], &mut rng).add_scalar(1.0);
    let lnb = Tensor::randn(&[c], &mut rng);
    let wk = Tensor::randn(&[heads * dh, c], &mut rng).mul_scalar(0.3);
    let wv = Tensor::randn(&[heads * dv, c], &mut rng).mul_scalar(0.3);
    let bk = Tensor::randn(&[heads * dh], &mut rng);
    let bv = Tensor::randn(&[heads * dv], &mut rng);
    let mask = case.mask.then(|| {
        let mut d = Vec::new();
        for i in 0..b {
            let keep = 1 + rng.below(m);
            d.extend((0..m).map(|j| if (j + i) % m < keep { 1.0 } else { 0.0 }));
        }
        Tensor::from_vec(d, &[b, m]).unwrap()
    });
    let r = Tensor::randn(&[b, heads, n, dv], &mut rng);
    let leaves: Vec<Tensor> = [&q, &x, &lnw, &lnb, &wk, &wv, &bk, &bv]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == 1 && !x_grad {
                (*t).clone()
            } else {
                t.requires_grad()
            }
        })
        .collect();
    let [q_, x_, lnw_, lnb_, wk_, wv_, bk_, bv_] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| &leaves[i]);
    // (normalised rows in, the affine applied by the kernel)
    let x_in = if normalized {
        x_.layer_norm(None, None, 1e-5)?
    } else {
        x_.clone()
    };
    let fused = fused_cross_attention_with(
        q_,
        &x_in,
        KvProjection {
            norm: case.norm.then_some((Some(lnw_), Some(lnb_), 1e-5)),
            normalized,
            wk: wk_,
            bk: case.biases.then_some(bk_),
            wv: wv_,
            bv: case.biases.then_some(bv_),
        },
        heads,
        mask.as_ref(),
        None,
        kernel,
    )?;
    let xn = if case.norm {
        x_.layer_norm(Some(lnw_), Some(lnb_), 1e-5)?
    } else {
        x_.clone()
    };
    let mut k = xn.matmul(&wk_.t()?)?;
    let mut v = xn.matmul(&wv_.t()?)?;
    if case.biases {
        k = k.add(bk_)?;
        v = v.add(bv_)?;
    }
    let k = k.reshape(&[b, m, heads, dh])?.permute(&[0, 2, 1, 3])?;
    let v = v.reshape(&[b, m, heads, dv])?.permute(&[0, 2, 1, 3])?;
    let reference = attention_reference(
        q_,
        &k,
        &v,
        mask.as_ref(),
        &AttentionOptions::default(),
        None,
    )?;
    let ctx = format!(
        "{kernel:?} case b={b} h={heads} n={n} m={m} c={c} dh={dh} dv={dv} norm={} bias={} mask={} strided={} x_grad={x_grad} normalized={normalized}",
        case.norm, case.biases, case.mask, case.strided_x
    );
    let e = rel_err(&fused, &reference, 1e-6);
    assert!(e <= 1e-5, "forward {ctx}: {e}");
    let gf = fused.mul(&r)?.sum_all().backward()?;
    let gr = reference.mul(&r)?.sum_all().backward()?;
    let names = ["q", "x", "ln weight", "ln bias", "wk", "wv", "bk", "bv"];
    // The key bias gets zero gradient in exact arithmetic (softmax is invariant to a shift of a
    // row's logits), so it is rounding noise: compare relative to the largest gradient. With a
    // single key every gradient but v's vanishes the same way, hence a floor of 1% of it for all.
    let floor = leaves
        .iter()
        .filter_map(|l| gr.get(l))
        .flat_map(|t| t.to_vec())
        .fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, leaf) in leaves.iter().enumerate() {
        let used = match i {
            1 => x_grad,
            2 | 3 => case.norm,
            6 | 7 => case.biases,
            _ => true,
        };
        if !used {
            assert!(gf.get(leaf).is_none() && gr.get(leaf).is_none());
            continue;
        }
        let (a, bgrad) = (
            gf.get(leaf).expect("fused grad"),
            gr.get(leaf).expect("reference grad"),
        );
        let e = rel_err(a, bgrad, if i == 6 { floor } else { 1e-2 * floor });
        assert!(e <= 1e-4, "grad {} {ctx}: {e}", names[i]);
    }
    Ok(())
}

#[test]
fn fused_cross_matches_composition() -> Result<()> {
    let base = Case {
        b: 2,
        heads: 1,
        n: 7,
        m: 65,
        c: 13,
        dh: 8,
        dv: 8,
        norm: true,
        biases: true,
        mask: false,
        strided_x: false,
    };
    run(&base, 1)?;
    run(
        &Case {
            heads: 3,
            dv: 5,
            ..base
        },
        2,
    )?;
    run(&Case { n: 1, m: 1, ..base }, 3)?;
    run(
        &Case {
            n: 65,
            m: 129,
            c: 29,
            ..base
        },
        4,
    )?;
    run(&Case { mask: true, ..base }, 5)?;
    run(
        &Case {
            norm: false,
            biases: false,
            ..base
        },
        6,
    )?;
    run(
        &Case {
            strided_x: true,
            heads: 2,
            ..base
        },
        7,
    )?;
    run(
        &Case {
            b: 1,
            m: 300,
            n: 63,
            heads: 2,
            mask: true,
            ..base
        },
        8,
    )?;
    // Many queries: 128-token blocks, so 300 inputs span three blocks and, with two examples,
    // several tasks whose partial softmax results are merged.
    assert_eq!(perceiver_attn::block_tokens(4100), 128);
    run(
        &Case {
            b: 2,
            m: 300,
            n: 4100,
            heads: 2,
            mask: true,
            ..base
        },
        9,
    )?;
    run(
        &Case {
            b: 1,
            m: 1000,
            n: 1100,
            c: 5,
            dh: 4,
            dv: 3,
            ..base
        },
        10,
    )?;
    Ok(())
}

#[test]
fn fused_cross_rejects_bad_shapes() {
    let mut rng = Rng::new(0);
    let q = Tensor::randn(&[1, 1, 4, 8], &mut rng);
    let x = Tensor::randn(&[1, 5, 6], &mut rng);
    let wk = Tensor::randn(&[8, 6], &mut rng);
    let wv = Tensor::randn(&[8, 6], &mut rng);
    let bad = Tensor::randn(&[8, 7], &mut rng);
    let ok = KvProjection {
        norm: None,
        normalized: false,
        wk: &wk,
        bk: None,
        wv: &wv,
        bv: None,
    };
    assert!(fused_cross_attention(&q, &x, ok, 1, None, None).is_ok());
    assert!(fused_cross_attention(&q, &x, KvProjection { wk: &bad, ..ok }, 1, None, None).is_err());
    assert!(fused_cross_attention(&q, &x, KvProjection { wv: &bad, ..ok }, 1, None, None).is_err());
    assert!(fused_cross_attention(&q, &x, ok, 2, None, None).is_err());
    assert!(fused_cross_attention(&q, &x, ok, 1, Some(&Tensor::ones(&[1, 4])), None).is_err());
    let w3 = Tensor::ones(&[3]);
    assert!(fused_cross_attention(
        &q,
        &x,
        KvProjection {
            norm: Some((Some(&w3), None, 1e-5)),
            ..ok
        },
        1,
        None,
        None
    )
    .is_err());
}

#[test]
fn auto_picks_the_cheaper_kernel() -> Result<()> {
    use perceiver_attn::folded_is_cheaper;
    // Config A's cross-attend (1 head, 64 latents, 67 channels, widths 64): folded; config B's
    // (512 latents, 261 channels) and the MNIST preset's (4 heads, 32 latents, 35 channels):
    // projected.
    assert!(folded_is_cheaper(1, 64, 67, 64, 64));
    assert!(!folded_is_cheaper(1, 512, 261, 64, 64));
    assert!(!folded_is_cheaper(4, 32, 35, 64, 64));
    let mut rng = Rng::new(11);
    for (n, c, folded) in [(64, 67, true), (128, 200, false)] {
        let q = Tensor::randn(&[2, 1, n, 64], &mut rng);
        let x = Tensor::randn(&[2, 50, c], &mut rng);
        let wk = Tensor::randn(&[64, c], &mut rng).mul_scalar(0.1);
        let wv = Tensor::randn(&[64, c], &mut rng).mul_scalar(0.1);
        let proj = KvProjection {
            norm: Some((None, None, 1e-5)),
            normalized: false,
            wk: &wk,
            bk: None,
            wv: &wv,
            bv: None,
        };
        let run =
            |k| fused_cross_attention_with(&q, &x, proj, 1, None, None, k).map(|t| t.to_vec());
        let (auto, f, p) = (
            run(CrossKernel::Auto)?,
            run(CrossKernel::Folded)?,
            run(CrossKernel::Projected)?,
        );
        // The two kernels round differently, so Auto matches exactly the one it picked.
        assert_ne!(f, p);
        assert_eq!(auto, if folded { f } else { p }, "n={n} c={c}");
    }
    Ok(())
}
