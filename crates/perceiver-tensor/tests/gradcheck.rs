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
