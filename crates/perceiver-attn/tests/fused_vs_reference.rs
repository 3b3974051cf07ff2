//! The fused kernel against the reference composition: forward and gradients of q, k, v (and of
//! the projections, through the layer), on odd sizes, many head counts, masks, fully masked
//! rows and strided inputs.

use perceiver_attn::{
    attention_reference, flash_attention, AttentionOptions, AttnKernel, Call, KeyValues,
    MultiHeadAttention, MultiHeadAttentionConfig,
};
use perceiver_nn::ParamStore;
use perceiver_tensor::testing::check_gradients;
use perceiver_tensor::{Result, Rng, Tensor};
use proptest::prelude::*;

/// max |a - b| / max |b| (the metric of the golden fixtures).
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    rel_err_floor(a, b, 1e-6)
}

mod common;
use common::rel_err_floor;

/// A mask `[b, m]` hiding a different tail of each example; example 0 of `fully_masked` hides
/// every key.
fn mask(b: usize, m: usize, fully_masked: bool, rng: &mut Rng) -> Tensor {
    let mut data = Vec::with_capacity(b * m);
    for i in 0..b {
        let keep = if fully_masked && i == 0 {
            0
        } else {
            1 + rng.below(m)
        };
        data.extend((0..m).map(|j| if j < keep { 1.0 } else { 0.0 }));
    }
    Tensor::from_vec(data, &[b, m]).unwrap()
}

/// Inputs as strided views: q/k/v come from `[b, len, h, w]` permuted to `[b, h, len, w]`.
fn strided(b: usize, h: usize, len: usize, w: usize, rng: &mut Rng) -> Tensor {
    Tensor::randn(&[b, len, h, w], rng)
        .permute(&[0, 2, 1, 3])
        .unwrap()
}

fn compare(
    b: usize,
    h: usize,
    n: usize,
    m: usize,
    dk: usize,
    dv: usize,
    masked: Option<bool>,
    strided_inputs: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let (q, k, v) = if strided_inputs {
        (
            strided(b, h, n, dk, &mut rng),
            strided(b, h, m, dk, &mut rng),
            strided(b, h, m, dv, &mut rng),
        )
    } else {
        (
            Tensor::randn(&[b, h, n, dk], &mut rng),
            Tensor::randn(&[b, h, m, dk], &mut rng),
            Tensor::randn(&[b, h, m, dv], &mut rng),
        )
    };
    if strided_inputs && h > 1 && n > 1 {
        assert!(!q.is_contiguous());
    }
    let mk = masked.map(|full| mask(b, m, full, &mut rng));
    let r = Tensor::randn(&[b, h, n, dv], &mut rng);
    let run = |fused: bool| -> (Tensor, Vec<Tensor>) {
        let (qt, kt, vt) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
        let out = if fused {
            flash_attention(&qt, &kt, &vt, mk.as_ref(), None).unwrap()
        } else {
            attention_reference(
                &qt,
                &kt,
                &vt,
                mk.as_ref(),
                &AttentionOptions::default(),
                None,
            )
            .unwrap()
        };
        let g = out.mul(&r).unwrap().sum_all().backward().unwrap();
        let grads = [&qt, &kt, &vt]
            .iter()
            .map(|t| g.get(t).unwrap().clone())
            .collect();
        (out.detach(), grads)
    };
    let (fo, fg) = run(true);
    let (ro, rg) = run(false);
    let ctx =
        format!("b={b} h={h} n={n} m={m} dk={dk} dv={dv} mask={masked:?} strided={strided_inputs}");
    let e = rel_err(&fo, &ro);
    assert!(e <= 1e-5, "forward {ctx}: relative error {e}");
    let floor = rg
        .iter()
        .flat_map(|t| t.to_vec())
        .fold(1e-6f32, |m, v| m.max(v.abs()));
    for (name, (f, r)) in ["q", "k", "v"].iter().zip(fg.iter().zip(&rg)) {
        let e = rel_err_floor(f, r, floor);
        assert!(e <= 1e-4, "grad {name} {ctx}: relative error {e}");
    }
    if masked == Some(true) {
        // example 0 has no key: zero output, zero gradient to q
        let o0 = fo.narrow(0, 0, 1).unwrap().to_vec();
        assert!(
            o0.iter().all(|&x| x == 0.0),
            "{ctx}: fully masked rows must output zeros"
        );
        let gq0 = fg[0].narrow(0, 0, 1).unwrap().to_vec();
        assert!(gq0.iter().all(|&x| x == 0.0), "{ctx}");
    }
}

#[test]
fn odd_sizes_all_pairs() {
    let sizes = [1, 7, 63, 65, 129];
    let mut seed = 0;
    for &n in &sizes {
        for &m in &sizes {
            seed += 1;
            compare(2, 1, n, m, 8, 5, None, false, seed);
        }
    }
}

#[test]
fn heads_one_to_eight() {
    for h in 1..=8 {
        compare(1, h, 7, 65, 4, 6, None, false, 100 + h as u64);
    }
}

#[test]
fn masks_and_fully_masked_rows() {
    for (i, &(n, m)) in [(1, 7), (7, 63), (65, 129), (129, 65), (63, 1)]
        .iter()
        .enumerate()
    {
        compare(3, 2, n, m, 8, 8, Some(false), false, 200 + i as u64);
        compare(3, 2, n, m, 8, 8, Some(true), false, 300 + i as u64);
    }
}

#[test]
fn strided_inputs() {
    compare(2, 3, 65, 129, 8, 4, None, true, 400);
    compare(2, 4, 7, 63, 16, 16, Some(true), true, 401);
}

#[test]
fn large_key_counts_span_many_blocks() {
    // several key blocks and query blocks, with a width large enough to vectorise
    compare(1, 2, 130, 700, 32, 32, Some(false), false, 500);
}

#[test]
fn all_keys_in_one_block_with_wide_query_blocks() {
    // Up to FULL_KEYS keys the forward takes them all at once, with query blocks wider than
    // BLOCK_Q when there are few (batch, head) pairs; one key more falls back to key blocks.
    use perceiver_attn::{BLOCK_Q, FULL_KEYS};
    compare(
        1,
        1,
        5 * BLOCK_Q + 3,
        FULL_KEYS,
        16,
        8,
        Some(false),
        false,
        600,
    );
    compare(
        1,
        2,
        3 * BLOCK_Q,
        FULL_KEYS + 1,
        8,
        16,
        Some(true),
        true,
        601,
    );
}

/// Random `q: [1, 2, 3, 4]`, `k: [1, 2, 5, 4]` and `v: [1, 2, 5, 3]`.
fn small_qkv(rng: &mut Rng) -> [Tensor; 3] {
    [[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 3]].map(|shape| Tensor::randn(&shape, rng))
}

#[test]
fn fused_kernel_passes_a_finite_difference_check() {
    let mut rng = Rng::new(7);
    let [q, k, v] = small_qkv(&mut rng);
    let m = Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.0], &[1, 5]).unwrap();
    check_gradients(&[q, k, v], |x| {
        flash_attention(&x[0], &x[1], &x[2], Some(&m), None)
    })
    .unwrap();
}

#[test]
fn bad_arguments_are_errors() {
    let mut rng = Rng::new(1);
    let [q, k, v] = small_qkv(&mut rng);
    assert!(flash_attention(&q, &k, &Tensor::randn(&[1, 2, 6, 3], &mut rng), None, None).is_err());
    assert!(flash_attention(&q, &Tensor::randn(&[1, 2, 5, 3], &mut rng), &v, None, None).is_err());
    assert!(flash_attention(&q, &k, &v, Some(&Tensor::ones(&[1, 4])), None).is_err());
    assert!(flash_attention(&q.reshape(&[2, 3, 4]).unwrap(), &k, &v, None, None).is_err());
    assert!(flash_attention(&q, &k, &v, None, Some(f32::NAN)).is_err());
    let e = flash_attention(
        &q,
        &Tensor::randn(&[1, 2, 0, 4], &mut rng),
        &Tensor::randn(&[1, 2, 0, 3], &mut rng),
        None,
        None,
    );
    assert!(e.is_err());
}

fn layer(kernel: AttnKernel, seed: u64) -> (ParamStore, MultiHeadAttention) {
    let mut store = ParamStore::new();
    let mut cfg = MultiHeadAttentionConfig::lucidrains(12, 10, 3, 4);
    cfg.bias_q = true;
    cfg.v_dim = 3 * 5;
    cfg.kernel = kernel;
    let mha = MultiHeadAttention::new(&mut store, "attn", cfg, &mut Rng::new(seed)).unwrap();
    (store, mha)
}

#[test]
fn layer_fused_matches_reference_including_projections() -> Result<()> {
    let (fs, fl) = layer(AttnKernel::Fused, 3);
    let (rs, rl) = layer(AttnKernel::Reference, 3);
    let mut rng = Rng::new(9);
    let xq = Tensor::randn(&[2, 7, 12], &mut rng);
    let xkv = Tensor::randn(&[2, 65, 10], &mut rng);
    let m = mask(2, 65, false, &mut rng);
    let kv = KeyValues::Rows {
        x: &xkv,
        norm: None,
    };
    let ro = rl.attend(&xq, kv, masked_call(&m))?;
    let r = Tensor::randn(ro.shape(), &mut rng);
    let rg = ro.mul(&r)?.sum_all().backward()?;
    assert_eq!(fs.len(), 6); // 4 weights, biases on q and out
                             // Every kernel the crate has, chosen through the layer's config.
    for kernel in [
        AttnKernel::Fused,
        AttnKernel::Flash,
        AttnKernel::CrossProjected,
        AttnKernel::CrossFolded,
    ] {
        let mut fl = fl.clone();
        fl.config.kernel = kernel;
        let fo = fl.attend(&xq, kv, masked_call(&m))?;
        assert_eq!(fo.shape(), &[2, 7, 12]);
        assert!(rel_err(&fo, &ro) <= 1e-5, "{kernel:?}");
        let fg = fo.mul(&r)?.sum_all().backward()?;
        for (fp, rp) in fs.iter().zip(rs.iter()) {
            assert_eq!(fp.name(), rp.name());
            let e = rel_err(fp.grad(&fg)?, rp.grad(&rg)?);
            assert!(e <= 1e-4, "{kernel:?} {}: {e}", fp.name());
        }
    }
    Ok(())
}

/// A call with a key padding mask, in eval mode.
fn masked_call(m: &Tensor) -> Call<'_> {
    Call {
        mask: Some(m),
        ..Call::default()
    }
}

#[test]
fn dropout_runs_on_the_reference_kernel_whatever_the_setting() {
    let mut store = ParamStore::new();
    let mut cfg = MultiHeadAttentionConfig::lucidrains(8, 8, 2, 4);
    cfg.dropout = 0.5;
    let fused = MultiHeadAttention::new(&mut store, "a", cfg.clone(), &mut Rng::new(0)).unwrap();
    cfg.kernel = AttnKernel::Reference;
    let reference = MultiHeadAttention::new(&mut store, "b", cfg, &mut Rng::new(0)).unwrap();
    assert_eq!(fused.kernel_for(true), AttnKernel::Reference);
    assert_eq!(fused.kernel_for(false), AttnKernel::Fused);
    let x = Tensor::randn(&[1, 4, 8], &mut Rng::new(1));
    let kv = KeyValues::Rows { x: &x, norm: None };
    let train = |layer: &MultiHeadAttention, seed: u64| {
        let mut rng = Rng::new(seed);
        let call = Call {
            train: true,
            rng: Some(&mut rng),
            ..Call::default()
        };
        layer.attend(&x, kv, call).unwrap().to_vec()
    };
    // In training both layers drop the same probabilities (the same random numbers).
    assert_eq!(train(&fused, 7), train(&reference, 7));
    // In eval mode there is no dropout: the fused kernel runs and agrees with the reference.
    let eval = fused.attend(&x, kv, Call::default()).unwrap();
    let eval_ref = reference.attend(&x, kv, Call::default()).unwrap();
    assert!(rel_err(&eval, &eval_ref) <= 1e-5);
    assert_ne!(eval.to_vec(), train(&fused, 7));
    // Dropout needs random numbers.
    let call = Call {
        train: true,
        ..Call::default()
    };
    assert!(reference.attend(&x, kv, call).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fused_equals_reference_over_shapes(b in 1usize..3, h in 1usize..4, n in 1usize..80, m in 1usize..300, dk in 1usize..17, dv in 1usize..17, masked in prop::option::of(any::<bool>()), strided_inputs in any::<bool>(), seed in 0u64..10_000) {
        compare(b, h, n, m, dk, dv, masked, strided_inputs, seed);
    }
}

#[test]
fn layer_normed_kv_fused_matches_reference() -> Result<()> {
    use perceiver_nn::LayerNorm;
    let (fs, fl) = layer(AttnKernel::Fused, 5);
    let (rs, rl) = layer(AttnKernel::Reference, 5);
    let mut fstore = fs.clone();
    let mut rstore = rs.clone();
    let fln = LayerNorm::new(&mut fstore, "norm_kv", 10, 1e-5)?;
    let rln = LayerNorm::new(&mut rstore, "norm_kv", 10, 1e-5)?;
    let mut rng = Rng::new(11);
    // non-trivial LayerNorm parameters, equal in both
    let w = Tensor::randn(&[10], &mut rng);
    let b = Tensor::randn(&[10], &mut rng);
    for ln in [&fln, &rln] {
        ln.weight.set(&w)?;
        ln.bias.set(&b)?;
    }
    let xq = Tensor::randn(&[2, 5, 12], &mut rng);
    let xkv = Tensor::randn(&[2, 140, 10], &mut rng).requires_grad();
    let m = mask(2, 140, false, &mut rng);
    let fkv = KeyValues::Rows {
        x: &xkv,
        norm: Some(&fln),
    };
    let rkv = KeyValues::Rows {
        x: &xkv,
        norm: Some(&rln),
    };
    let fo = fl.attend(&xq, fkv, masked_call(&m))?;
    let ro = rl.attend(&xq, rkv, masked_call(&m))?;
    assert!(rel_err(&fo, &ro) <= 1e-5);
    let r = Tensor::randn(fo.shape(), &mut rng);
    let fg = fo.mul(&r)?.sum_all().backward()?;
    let rg = ro.mul(&r)?.sum_all().backward()?;
    assert!(rel_err(fg.get(&xkv).unwrap(), rg.get(&xkv).unwrap()) <= 1e-4);
    let floor = rstore
        .iter()
        .flat_map(|p| p.grad(&rg).unwrap().to_vec())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    for (fp, rp) in fstore.iter().zip(rstore.iter()) {
        let e = rel_err_floor(fp.grad(&fg)?, rp.grad(&rg)?, 1e-2 * floor);
        assert!(e <= 1e-4, "{}: {e}", fp.name());
    }
    // The same layer fed the normalised rows (the model's shared normalisation of one input
    // for several cross-attends), residual included, gradients through the normalisation.
    let xbar = xkv.layer_norm(None, None, 1e-5)?;
    let res = Tensor::randn(fo.shape(), &mut rng);
    let with_res = Call {
        mask: Some(&m),
        residual: Some(&res),
        ..Call::default()
    };
    let normalized = KeyValues::Normalized {
        x_bar: &xbar,
        norm: &fln,
    };
    let po = fl.attend(&xq, normalized, with_res)?;
    assert!(rel_err(&po, &ro.add(&res)?) <= 1e-5);
    let pg = po.mul(&r)?.sum_all().backward()?;
    assert!(rel_err(pg.get(&xkv).unwrap(), rg.get(&xkv).unwrap()) <= 1e-4);
    for (fp, rp) in fstore.iter().zip(rstore.iter()) {
        let e = rel_err_floor(fp.grad(&pg)?, rp.grad(&rg)?, 1e-2 * floor);
        assert!(e <= 1e-4, "normalised input, {}: {e}", fp.name());
    }
    // A kernel that projects whole keys applies the affine to the normalised rows itself.
    let normalized = KeyValues::Normalized {
        x_bar: &xbar,
        norm: &rln,
    };
    let plain = rl.attend(&xq, normalized, masked_call(&m))?;
    assert!(rel_err(&plain, &ro) <= 1e-5);
    Ok(())
}

/// Keys and values projected once and reused (a Perceiver's weight-shared cross-attends at
/// inference): `project_kv` + `attend` on `KeyValues::Projected`, from the raw input and from the rows before
/// the LayerNorm's affine, on both kernels, match the reference layer; the fused kernel refuses
/// inputs tracked by autograd.
#[test]
fn projected_kv_reuse_matches_reference() -> Result<()> {
    use perceiver_nn::LayerNorm;
    use perceiver_tensor::no_grad;
    let (_, rl) = layer(AttnKernel::Reference, 5);
    let ln = LayerNorm::new(&mut ParamStore::new(), "norm_kv", 10, 1e-5)?;
    let mut rng = Rng::new(12);
    ln.weight.set(&Tensor::randn(&[10], &mut rng))?;
    ln.bias.set(&Tensor::randn(&[10], &mut rng))?;
    let xq = Tensor::randn(&[2, 5, 12], &mut rng);
    let xkv = Tensor::randn(&[2, 1300, 10], &mut rng);
    let m = mask(2, 1300, false, &mut rng);
    let res = Tensor::randn(&[2, 5, 12], &mut rng);
    let kv = KeyValues::Rows {
        x: &xkv,
        norm: Some(&ln),
    };
    let want = rl.attend(&xq, kv, masked_call(&m))?.add(&res)?;
    for kernel in [AttnKernel::Fused, AttnKernel::Reference] {
        let (_, l) = layer(kernel, 5);
        let got = no_grad(|| -> Result<_> {
            let raw = l.project_kv(&ln.forward(&xkv)?, None)?;
            let xbar = xkv.layer_norm(None, None, 1e-5)?;
            let folded = l.project_kv(&xbar, Some(&ln))?;
            Ok([raw, folded].map(|(k, v)| {
                let call = Call {
                    mask: Some(&m),
                    residual: Some(&res),
                    ..Call::default()
                };
                l.attend(&xq, KeyValues::Projected { k: &k, v: &v }, call)
            }))
        })?;
        for o in got {
            let e = rel_err(&o?, &want);
            assert!(e <= 1e-5, "{kernel:?}: {e}");
        }
    }
    let q = Tensor::randn(&[2, 1, 5, 4], &mut rng);
    let kv = Tensor::randn(&[2, 30, 4], &mut rng);
    assert!(perceiver_attn::cross_attention_kv(&q, &kv, &kv, 1, None, None).is_ok());
    let tracked = kv.requires_grad();
    assert!(perceiver_attn::cross_attention_kv(&q, &tracked, &kv, 1, None, None).is_err());
    Ok(())
}

/// Non-finite inputs propagate as in the plain composition: an example whose keys hold NaN
/// gives NaN outputs with every kernel (never a finite answer that hides corrupt data), and
/// the other examples are untouched.
#[test]
fn nan_inputs_propagate_like_the_reference() -> Result<()> {
    let (_, rl) = layer(AttnKernel::Reference, 4);
    let mut rng = Rng::new(5);
    let xq = Tensor::randn(&[2, 7, 12], &mut rng);
    for all in [true, false] {
        let mut kv_data = Tensor::randn(&[2, 300, 10], &mut rng).to_vec();
        let first = &mut kv_data[..300 * 10];
        if all {
            first.fill(f32::NAN);
        } else {
            first[123 * 10 + 4] = f32::NAN;
        }
        let xkv = Tensor::from_vec(kv_data, &[2, 300, 10])?;
        let kv = KeyValues::Rows {
            x: &xkv,
            norm: None,
        };
        let ro = rl.attend(&xq, kv, Call::default())?.to_vec();
        let half = ro.len() / 2;
        assert!(
            ro[..half].iter().all(|v| v.is_nan()),
            "reference, all {all}"
        );
        for kernel in [
            AttnKernel::Fused,
            AttnKernel::Flash,
            AttnKernel::CrossProjected,
            AttnKernel::CrossFolded,
        ] {
            let mut fl = rl.clone();
            fl.config.kernel = kernel;
            let fo = fl.attend(&xq, kv, Call::default())?.to_vec();
            assert!(
                fo[..half].iter().all(|v| v.is_nan()),
                "{kernel:?}, all {all}"
            );
            assert!(
                fo[half..].iter().all(|v| v.is_finite()),
                "{kernel:?}, all {all}"
            );
        }
    }
    Ok(())
}
