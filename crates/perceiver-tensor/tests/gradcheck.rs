//! Gradient checks (central differences against autograd) for every differentiable op.
//!
//! Each test is named after the op's entry in `perceiver_tensor::ops::OPS`;
//! `every_op_has_a_gradient_check` fails when an op of that table has no test here.

use perceiver_tensor::testing::{check_gradients, GradCheck};
use perceiver_tensor::{GeluKind, Result, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(seed))
}

/// Values bounded away from zero (for log, sqrt, div, relu, max kinks).
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let v = 0.3 + rng.uniform() * 1.5;
            if rng.uniform() < 0.5 {
                -v
            } else {
                v
            }
        })
        .collect();
    Tensor::from_vec(data, shape).unwrap()
}

fn positive(shape: &[usize], seed: u64) -> Tensor {
    let t = away_from_zero(shape, seed);
    Tensor::from_vec(t.to_vec().iter().map(|v| v.abs()).collect(), shape).unwrap()
}

fn ok(r: std::result::Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn grad_add() {
    ok(check_gradients(&[randn(&[3, 4], 1), randn(&[4], 2)], |x| {
        x[0].add(&x[1])
    }));
    ok(check_gradients(
        &[randn(&[2, 1, 3], 3), randn(&[4, 1], 4)],
        |x| x[0].add(&x[1]),
    ));
}

#[test]
fn grad_sub() {
    ok(check_gradients(
        &[randn(&[3, 4], 1), randn(&[3, 1], 2)],
        |x| x[0].sub(&x[1]),
    ));
}

#[test]
fn grad_mul() {
    ok(check_gradients(
        &[randn(&[2, 3, 4], 5), randn(&[1, 4], 6)],
        |x| x[0].mul(&x[1]),
    ));
}

#[test]
fn grad_div() {
    ok(check_gradients(
        &[randn(&[3, 4], 7), away_from_zero(&[3, 4], 8)],
        |x| x[0].div(&x[1]),
    ));
    ok(check_gradients(
        &[randn(&[3, 4], 9), away_from_zero(&[4], 10)],
        |x| x[0].div(&x[1]),
    ));
}

#[test]
fn grad_scalar() {
    ok(check_gradients(&[randn(&[5], 1)], |x| {
        Ok(x[0].affine(-1.5, 0.5))
    }));
    ok(check_gradients(&[randn(&[5], 2)], |x| {
        Ok(x[0]
            .add_scalar(2.0)
            .mul_scalar(3.0)
            .div_scalar(4.0)
            .sub_scalar(1.0))
    }));
}

#[test]
fn grad_neg() {
    ok(check_gradients(&[randn(&[2, 3], 1)], |x| Ok(x[0].neg())));
}

#[test]
fn grad_exp() {
    ok(check_gradients(&[randn(&[2, 3], 1)], |x| Ok(x[0].exp())));
}

#[test]
fn grad_log() {
    ok(check_gradients(&[positive(&[2, 3], 1)], |x| Ok(x[0].log())));
}

#[test]
fn grad_sqrt() {
    ok(check_gradients(
        &[positive(&[2, 3], 2)],
        |x| Ok(x[0].sqrt()),
    ));
}

#[test]
fn grad_powf() {
    ok(check_gradients(&[positive(&[2, 3], 3)], |x| {
        Ok(x[0].powf(2.5))
    }));
    ok(check_gradients(
        &[randn(&[2, 3], 4)],
        |x| Ok(x[0].powf(3.0)),
    ));
}

#[test]
fn grad_tanh() {
    ok(check_gradients(&[randn(&[2, 3], 1)], |x| Ok(x[0].tanh())));
}

#[test]
fn grad_sigmoid() {
    ok(check_gradients(
        &[randn(&[2, 3], 1)],
        |x| Ok(x[0].sigmoid()),
    ));
}

#[test]
fn grad_relu() {
    ok(check_gradients(&[away_from_zero(&[3, 4], 1)], |x| {
        Ok(x[0].relu())
    }));
}

#[test]
fn grad_gelu_erf() {
    ok(check_gradients(&[randn(&[3, 4], 1)], |x| {
        Ok(x[0].gelu(GeluKind::Erf))
    }));
}

#[test]
fn grad_gelu_tanh() {
    ok(check_gradients(&[randn(&[3, 4], 2)], |x| {
        Ok(x[0].gelu(GeluKind::Tanh))
    }));
}

#[test]
fn grad_sum() {
    let x = randn(&[2, 3, 4], 1);
    ok(check_gradients(std::slice::from_ref(&x), |x| {
        x[0].sum(&[1], false)
    }));
    ok(check_gradients(std::slice::from_ref(&x), |x| {
        x[0].sum(&[0, 2], true)
    }));
    ok(check_gradients(&[x], |x| Ok(x[0].sum_all())));
}

#[test]
fn grad_mean() {
    let x = randn(&[2, 3, 4], 2);
    ok(check_gradients(std::slice::from_ref(&x), |x| {
        x[0].mean(&[2], false)
    }));
    ok(check_gradients(std::slice::from_ref(&x), |x| {
        x[0].mean(&[0], true)
    }));
    ok(check_gradients(&[x], |x| Ok(x[0].mean_all())));
}

#[test]
fn grad_max() {
    // Distinct values, so the maximum is unique and finite differences are exact.
    let data: Vec<f32> = (0..24).map(|i| ((i * 7) % 24) as f32 * 0.5).collect();
    let x = Tensor::from_vec(data, &[2, 3, 4]).unwrap();
    let cfg = GradCheck {
        step: 1e-3,
        ..GradCheck::default()
    };
    ok(cfg.run(std::slice::from_ref(&x), |x| x[0].max(&[1], false)));
    ok(cfg.run(&[x], |x| x[0].max(&[0, 2], true)));
}

#[test]
fn grad_matmul() {
    ok(check_gradients(
        &[randn(&[3, 4], 1), randn(&[4, 5], 2)],
        |x| x[0].matmul(&x[1]),
    ));
    // transposed operand (a strided view)
    ok(check_gradients(
        &[randn(&[3, 4], 3), randn(&[5, 4], 4)],
        |x| x[0].matmul(&x[1].t()?),
    ));
}

#[test]
fn grad_matmul_batched() {
    // batched x shared (Linear layer), shared x batched, broadcast batch dims, rank 4
    ok(check_gradients(
        &[randn(&[2, 3, 4], 1), randn(&[4, 5], 2)],
        |x| x[0].matmul(&x[1]),
    ));
    ok(check_gradients(
        &[randn(&[3, 4], 3), randn(&[2, 4, 5], 4)],
        |x| x[0].matmul(&x[1]),
    ));
    ok(check_gradients(
        &[randn(&[2, 1, 3, 4], 5), randn(&[3, 4, 2], 6)],
        |x| x[0].matmul(&x[1]),
    ));
    ok(check_gradients(
        &[randn(&[2, 2, 3, 4], 7), randn(&[2, 2, 5, 4], 8)],
        |x| x[0].matmul(&x[1].transpose(2, 3)?),
    ));
}

#[test]
fn grad_concat() {
    ok(check_gradients(
        &[randn(&[2, 3], 1), randn(&[2, 2], 2), randn(&[2, 1], 3)],
        |x| Tensor::concat(&[&x[0], &x[1], &x[2]], 1),
    ));
    ok(check_gradients(
        &[randn(&[1, 3], 4), randn(&[2, 3], 5)],
        |x| Tensor::concat(&[&x[0], &x[1]], 0),
    ));
}

#[test]
fn grad_narrow_split() {
    ok(check_gradients(&[randn(&[4, 5], 1)], |x| {
        x[0].narrow(1, 1, 3)
    }));
    ok(check_gradients(&[randn(&[4, 6], 2)], |x| {
        let parts = x[0].split(&[1, 2, 3], 1)?;
        // use pieces with different weights so each one matters
        let a = parts[0].mul_scalar(2.0).sum(&[1], false)?;
        let b = parts[1].sum(&[1], false)?;
        let c = parts[2].exp().sum(&[1], false)?;
        a.add(&b)?.add(&c)
    }));
    ok(check_gradients(&[randn(&[5, 2], 3)], |x| {
        let parts = x[0].chunk(2, 0)?;
        parts[0].sum(&[0], false)?.mul(&parts[1].sum(&[0], false)?)
    }));
}

#[test]
fn grad_index_select() {
    ok(check_gradients(&[randn(&[5, 3], 1)], |x| {
        x[0].index_select(0, &[4, 0, 4, 2])
    }));
    ok(check_gradients(&[randn(&[2, 5, 3], 2)], |x| {
        x[0].index_select(1, &[1, 1, 3])
    }));
}

#[test]
fn grad_gather() {
    let idx = Tensor::from_vec(vec![0.0, 2.0, 2.0, 1.0, 0.0, 0.0], &[3, 2]).unwrap();
    ok(check_gradients(&[randn(&[3, 3], 1)], move |x| {
        x[0].gather(1, &idx)
    }));
}

#[test]
fn grad_where() {
    let cond = Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0], &[2, 3]).unwrap();
    ok(check_gradients(
        &[randn(&[2, 3], 1), randn(&[3], 2)],
        move |x| Tensor::where_cond(&cond, &x[0], &x[1]),
    ));
}

#[test]
fn grad_masked_fill() {
    let mask = Tensor::from_vec(vec![1.0, 0.0, 0.0], &[1, 3]).unwrap();
    ok(check_gradients(&[randn(&[2, 3], 1)], move |x| {
        x[0].masked_fill(&mask, -1e4)
    }));
}

#[test]
fn grad_softmax() {
    ok(check_gradients(&[randn(&[3, 5], 1)], |x| x[0].softmax(1)));
    ok(check_gradients(&[randn(&[3, 4, 2], 2)], |x| {
        x[0].softmax(1)
    }));
}

#[test]
fn grad_log_softmax() {
    ok(check_gradients(&[randn(&[3, 5], 1)], |x| {
        x[0].log_softmax(1)
    }));
    ok(check_gradients(&[randn(&[4, 3], 2)], |x| {
        x[0].log_softmax(0)
    }));
}

#[test]
fn grad_layer_norm() {
    let w = randn(&[6], 2).add_scalar(1.0);
    let b = randn(&[6], 3);
    ok(check_gradients(
        &[randn(&[2, 3, 6], 1), w.clone(), b.clone()],
        |x| x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5),
    ));
    ok(check_gradients(&[randn(&[4, 6], 4)], |x| {
        x[0].layer_norm(None, None, 1e-5)
    }));
    // large enough to take the parallel path (rows split into chunks)
    let big = randn(&[300, 128], 5);
    ok(check_gradients(
        &[big, randn(&[128], 6), randn(&[128], 7)],
        |x| x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5),
    ));
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
    let fused = Tensor::layer_norm_concat(&[&x, &pos, &z], 1e-5)?;
    let plain = Tensor::concat(&[&x, &pos, &z], 2)?.layer_norm(None, None, 1e-5)?;
    assert_eq!(fused.shape(), &[4, 300, 10]);
    assert_eq!(
        fused.to_vec(),
        plain.to_vec(),
        "the same rows through the same kernel"
    );
    assert!(Tensor::layer_norm_concat(&[&x, &randn(&[4, 299, 2], 4)], 1e-5).is_err());
    assert!(Tensor::layer_norm_concat(&[], 1e-5).is_err());
    Ok(())
}

#[test]
fn grad_layer_norm_concat() {
    // tracked parts take the composition, gradients included
    ok(check_gradients(
        &[randn(&[2, 3, 2], 1), randn(&[2, 3, 4], 2)],
        |p| Tensor::layer_norm_concat(&[&p[0], &p[1]], 1e-5),
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

#[test]
fn grad_cross_entropy() {
    ok(check_gradients(&[randn(&[4, 5], 1)], |x| {
        x[0].cross_entropy(&[0, 4, 2, 2], 0.0)
    }));
    ok(check_gradients(&[randn(&[3, 6], 2)], |x| {
        x[0].cross_entropy(&[5, 0, 1], 0.1)
    }));
}

#[test]
fn grad_dropout() {
    // Same seed on every evaluation, so the mask is fixed and the op is linear.
    ok(check_gradients(&[randn(&[4, 5], 1)], |x| {
        x[0].dropout(0.3, true, &mut Rng::new(9))
    }));
}

#[test]
fn grad_reshape() {
    ok(check_gradients(&[randn(&[2, 6], 1)], |x| {
        Ok(x[0].reshape(&[3, 4])?.exp())
    }));
    ok(check_gradients(&[randn(&[2, 3], 2)], |x| {
        x[0].t()?.reshape(&[6])
    }));
    ok(check_gradients(&[randn(&[2, 3], 3)], |x| {
        x[0].unsqueeze(1)?.squeeze(1)?.flatten(0, 1)
    }));
}

#[test]
fn grad_permute() {
    ok(check_gradients(&[randn(&[2, 3, 4], 1)], |x| {
        Ok(x[0].permute(&[2, 0, 1])?.exp())
    }));
    ok(check_gradients(&[randn(&[2, 3], 2)], |x| {
        x[0].transpose(0, 1)?.softmax(1)
    }));
}

#[test]
fn grad_broadcast() {
    ok(check_gradients(&[randn(&[3, 1], 1)], |x| {
        Ok(x[0].broadcast_to(&[2, 3, 4])?.exp())
    }));
}

#[test]
fn grad_contiguous() {
    ok(check_gradients(&[randn(&[3, 4], 1)], |x| {
        Ok(x[0].t()?.contiguous().exp())
    }));
}

/// A composite of many ops: exercises accumulation through shared subexpressions.
#[test]
fn grad_composite_mlp() -> Result<()> {
    let x = randn(&[4, 3], 1);
    let w1 = randn(&[3, 5], 2);
    let b1 = randn(&[5], 3);
    let w2 = randn(&[5, 2], 4);
    ok(check_gradients(&[x, w1, b1, w2], |p| {
        let h = p[0].matmul(&p[1])?.add(&p[2])?.gelu(GeluKind::Erf);
        let h = h.layer_norm(None, None, 1e-5)?;
        h.matmul(&p[3])?.cross_entropy(&[0, 1, 1, 0], 0.05)
    }));
    Ok(())
}

#[test]
fn every_op_has_a_gradient_check() {
    let src = include_str!("gradcheck.rs");
    for (op, module, test) in perceiver_tensor::ops::OPS {
        assert!(
            src.contains(&format!("fn {test}()")),
            "op `{op}` ({module}) has no gradient check named `{test}` in tests/gradcheck.rs"
        );
    }
}
