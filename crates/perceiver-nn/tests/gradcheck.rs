//! Gradient checks (central differences against autograd) for every fused layer op, and each
//! fused op against the composition of tensor ops it replaces, forward and backward.
//!
//! Each gradient check is named after the op's entry in `perceiver_nn::ops::OPS`;
//! `every_op_has_a_gradient_check` fails when an op of that table has no test here.

use perceiver_nn::ops::{batch_norm2d, batch_norm2d_train, conv2d, layer_norm_concat, max_pool2d};
use perceiver_nn::FusedOps;
use perceiver_tensor::testing::check_gradients;
use perceiver_tensor::{GeluKind, Result, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(seed))
}

fn ok(r: std::result::Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn layer_norm_concat_equals_concat_then_layer_norm() -> Result<()> {
    // a contiguous part, a broadcast one (shared features) and a strided one; enough rows for
    // the parallel path
    let x = randn(&[4, 300, 1], 1);
    let pos = randn(&[300, 6], 2)
        .unsqueeze(0)?
        .broadcast_to(&[4, 300, 6])?;
    let z = randn(&[3, 300, 4], 3).permute(&[2, 1, 0])?;
    let fused = layer_norm_concat(&[&x, &pos, &z], 1e-5)?;
    let plain = Tensor::concat(&[&x, &pos, &z], 2)?.layer_norm(None, None, 1e-5)?;
    assert_eq!(fused.shape(), &[4, 300, 10]);
    assert_eq!(
        fused.to_vec(),
        plain.to_vec(),
        "the same rows through the same kernel"
    );
    assert!(layer_norm_concat(&[&x, &randn(&[4, 299, 2], 4)], 1e-5).is_err());
    assert!(layer_norm_concat(&[], 1e-5).is_err());
    Ok(())
}

#[test]
fn grad_layer_norm_concat() {
    // tracked parts take the composition, gradients included
    ok(check_gradients(
        &[randn(&[2, 3, 2], 1), randn(&[2, 3, 4], 2)],
        |p| layer_norm_concat(&[&p[0], &p[1]], 1e-5),
    ));
}

#[test]
fn grad_linear() {
    let x = randn(&[2, 3, 5], 1);
    let w = randn(&[4, 5], 2);
    let b = randn(&[4], 3);
    ok(check_gradients(&[x.clone(), w.clone(), b.clone()], |p| {
        p[0].linear(&p[1], Some(&p[2]), None)
    }));
    ok(check_gradients(&[x.clone(), w.clone(), b], |p| {
        p[0].linear(&p[1], Some(&p[2]), Some(GeluKind::Erf))
    }));
    ok(check_gradients(&[x.clone(), w.clone()], |p| {
        p[0].linear(&p[1], None, Some(GeluKind::Tanh))
    }));
    // the residual added in the epilogue, with and without a bias; a strided residual
    let r = randn(&[2, 3, 4], 4);
    ok(check_gradients(
        &[x.clone(), w.clone(), randn(&[4], 5), r.clone()],
        |p| p[0].linear_add(&p[1], Some(&p[2]), &p[3]),
    ));
    let rt = randn(&[4, 3, 2], 6)
        .permute(&[2, 1, 0])
        .expect("valid axes");
    ok(check_gradients(&[x, w, rt], |p| {
        p[0].linear_add(&p[1], None, &p[2])
    }));
}

#[test]
fn grad_mlp_add() {
    let x = randn(&[2, 3, 5], 1);
    let (w1, b1) = (randn(&[7, 5], 2), randn(&[7], 3));
    let (w2, b2) = (randn(&[4, 7], 4), randn(&[4], 5));
    let r = randn(&[2, 3, 4], 6);
    for act in [GeluKind::Erf, GeluKind::Tanh] {
        ok(check_gradients(
            &[
                x.clone(),
                w1.clone(),
                b1.clone(),
                w2.clone(),
                b2.clone(),
                r.clone(),
            ],
            |p| p[0].mlp_add(&p[1], Some(&p[2]), act, &p[3], Some(&p[4]), &p[5]),
        ));
    }
    ok(check_gradients(&[x, w1, w2, r], |p| {
        p[0].mlp_add(&p[1], None, GeluKind::Erf, &p[2], None, &p[3])
    }));
}

#[test]
fn mlp_add_equals_its_composition() -> Result<()> {
    // large enough for both threads and several blocks; every gradient against the two
    // linear ops and the add
    let x = randn(&[300, 40], 1);
    let (w1, b1) = (randn(&[90, 40], 2).mul_scalar(0.2), randn(&[90], 3));
    let (w2, b2) = (randn(&[40, 90], 4).mul_scalar(0.2), randn(&[40], 5));
    let r = randn(&[300, 40], 6);
    let leaves: Vec<Tensor> = [&x, &w1, &b1, &w2, &b2, &r]
        .iter()
        .map(|t| t.requires_grad())
        .collect();
    let [x_, w1_, b1_, w2_, b2_, r_] = [0, 1, 2, 3, 4, 5].map(|i| &leaves[i]);
    let fused = x_.mlp_add(w1_, Some(b1_), GeluKind::Erf, w2_, Some(b2_), r_)?;
    let h = x_.linear(w1_, Some(b1_), Some(GeluKind::Erf))?;
    let plain = h.linear_add(w2_, Some(b2_), r_)?;
    assert_eq!(
        fused.to_vec(),
        plain.to_vec(),
        "the same products and epilogues"
    );
    let g = randn(&[300, 40], 7);
    let gf = fused.mul(&g)?.sum_all().backward()?;
    let gp = plain.mul(&g)?.sum_all().backward()?;
    for t in &leaves {
        let (a, c) = (gf.get(t).unwrap().to_vec(), gp.get(t).unwrap().to_vec());
        let scale = c.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        assert!(a.iter().zip(&c).all(|(a, c)| (a - c).abs() <= 1e-5 * scale));
    }
    let bad = x.mlp_add(
        &w1,
        Some(&b1),
        GeluKind::Erf,
        &w2,
        Some(&b2),
        &randn(&[300, 39], 8),
    );
    assert!(bad.unwrap_err().to_string().contains("residual"));
    assert!(x.mlp_add(&w2, None, GeluKind::Erf, &w1, None, &r).is_err());
    Ok(())
}

#[test]
fn linear_add_equals_linear_then_add() -> Result<()> {
    // large enough for both threads and several output blocks
    let x = randn(&[300, 40], 1);
    let w = randn(&[70, 40], 2);
    let b = randn(&[70], 3);
    let r = randn(&[300, 70], 4);
    let fused = x.linear_add(&w, Some(&b), &r)?.to_vec();
    let plain = x.linear(&w, Some(&b), None)?.add(&r)?.to_vec();
    assert_eq!(
        fused, plain,
        "the epilogue adds in the same order as the separate op"
    );
    let err = x
        .linear_add(&w, Some(&b), &randn(&[300, 69], 5))
        .unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
    Ok(())
}

#[test]
fn linear_matches_its_composition_on_many_panels() -> Result<()> {
    // 700 rows of width 3 -> several panels and both threads; strided (transposed) input
    let x = randn(&[3, 700], 4).t()?;
    let w = randn(&[3, 3], 5);
    let b = randn(&[3], 6);
    for act in [None, Some(GeluKind::Erf), Some(GeluKind::Tanh)] {
        let (xt, wt, bt) = (x.requires_grad(), w.requires_grad(), b.requires_grad());
        let fused = xt.linear(&wt, Some(&bt), act)?;
        let mut plain = xt.matmul(&wt.t()?)?.add(&bt)?;
        if let Some(k) = act {
            plain = plain.gelu(k);
        }
        let (f, p) = (fused.to_vec(), plain.to_vec());
        assert!(f
            .iter()
            .zip(&p)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
        let r = randn(fused.shape(), 7);
        let gf = fused.mul(&r)?.sum_all().backward()?;
        let gp = plain.mul(&r)?.sum_all().backward()?;
        for t in [&xt, &wt, &bt] {
            let (a, c) = (gf.get(t).unwrap().to_vec(), gp.get(t).unwrap().to_vec());
            let scale = c.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            assert!(a.iter().zip(&c).all(|(a, c)| (a - c).abs() <= 1e-4 * scale));
        }
    }
    assert!(x.linear(&randn(&[3, 4], 8), None, None).is_err());
    assert!(x.linear(&w, Some(&randn(&[4], 9)), None).is_err());
    Ok(())
}

/// Conv shapes: `(x [B, H, W, Cin], Cout, kernel, stride, padding)`: 3x3 with padding,
/// stride 2 on odd sizes, a pointwise 1x1, the preprocessor's 7x7/2/3, a non-square one.
type ConvCase = (
    [usize; 4],
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
);
const CONV_CASES: &[ConvCase] = &[
    ([2, 5, 4, 2], 3, (3, 3), (1, 1), (1, 1)),
    ([1, 7, 5, 3], 2, (3, 3), (2, 2), (1, 1)),
    ([2, 3, 3, 4], 3, (1, 1), (1, 1), (0, 0)),
    ([2, 9, 7, 2], 2, (7, 7), (2, 2), (3, 3)),
    ([2, 4, 6, 2], 2, (2, 3), (1, 2), (0, 1)),
];

#[test]
fn grad_conv2d() {
    for (i, &(xs, cout, (kh, kw), stride, pad)) in CONV_CASES.iter().enumerate() {
        let s = 10 * i as u64;
        let x = randn(&xs, s + 1);
        let w = randn(&[cout, xs[3], kh, kw], s + 2);
        let b = randn(&[cout], s + 3);
        ok(check_gradients(&[x.clone(), w.clone(), b], |p| {
            conv2d(&p[0], &p[1], Some(&p[2]), stride, pad)
        }));
        ok(check_gradients(&[x, w], |p| {
            conv2d(&p[0], &p[1], None, stride, pad)
        }));
    }
    // a strided (permuted) input and weight
    let x = randn(&[3, 5, 4, 2], 7)
        .permute(&[3, 1, 2, 0])
        .expect("axes");
    let w = randn(&[2, 3, 3, 2], 8)
        .permute(&[3, 2, 0, 1])
        .expect("axes");
    ok(check_gradients(&[x, w], |p| {
        conv2d(&p[0], &p[1], None, (2, 1), (1, 0))
    }));
}

#[test]
fn grad_batch_norm2d() {
    for (shape, seed) in [([2, 3, 4, 3], 1), ([1, 5, 3, 2], 2), ([3, 1, 1, 4], 3)] {
        let c = shape[3];
        let x = randn(&shape, seed).affine(2.0, 0.5);
        let (w, b) = (randn(&[c], seed + 10), randn(&[c], seed + 20));
        // training mode: through the batch statistics
        ok(check_gradients(&[x.clone(), w.clone(), b.clone()], |p| {
            Ok(batch_norm2d_train(&p[0], Some(&p[1]), Some(&p[2]), 1e-5)?.0)
        }));
        ok(check_gradients(std::slice::from_ref(&x), |p| {
            Ok(batch_norm2d_train(&p[0], None, None, 1e-3)?.0)
        }));
        // inference mode: running statistics as constants
        let mean = randn(&[c], seed + 30);
        let var = randn(&[c], seed + 40)
            .mul(&randn(&[c], seed + 40))
            .expect("same shape")
            .add_scalar(0.3);
        ok(check_gradients(&[x.clone(), w, b], |p| {
            batch_norm2d(&p[0], Some(&p[1]), Some(&p[2]), &mean, &var, 1e-5)
        }));
        ok(check_gradients(&[x], |p| {
            batch_norm2d(&p[0], None, None, &mean, &var, 1e-5)
        }));
    }
}

/// `n` distinct values 0.1 apart in a random order, so that no perturbation of the gradient
/// check moves a maximum.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let keys = randn(&[n], seed).to_vec();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut v = vec![0.0f32; n];
    for (rank, &i) in order.iter().enumerate() {
        v[i] = rank as f32 * 0.1 - n as f32 * 0.05;
    }
    Tensor::from_vec(v, shape).expect("n values")
}

#[test]
fn grad_max_pool2d() {
    let cases: &[([usize; 4], (usize, usize), (usize, usize), (usize, usize))] = &[
        ([2, 5, 5, 2], (3, 3), (2, 2), (1, 1)),
        ([1, 6, 7, 3], (2, 2), (2, 2), (0, 0)),
        ([2, 4, 5, 1], (3, 2), (1, 2), (1, 1)),
        ([1, 7, 7, 2], (7, 7), (1, 1), (3, 3)),
        ([2, 3, 3, 2], (1, 1), (1, 1), (0, 0)),
    ];
    for (i, &(shape, k, s, p)) in cases.iter().enumerate() {
        ok(check_gradients(&[distinct(&shape, i as u64)], |t| {
            max_pool2d(&t[0], k, s, p)
        }));
    }
}

#[test]
fn every_op_has_a_gradient_check() {
    let src = include_str!("gradcheck.rs");
    for (op, module, test) in perceiver_nn::ops::OPS {
        assert!(
            src.contains(&format!("fn {test}()")),
            "op `{op}` ({module}) has no gradient check named `{test}` in tests/gradcheck.rs"
        );
    }
}
