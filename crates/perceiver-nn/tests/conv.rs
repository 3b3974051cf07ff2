//! The image ops ([`conv2d`], [`batch_norm2d`], [`batch_norm2d_train`], [`max_pool2d`]) and
//! layers against naive loops or compositions of tensor ops written here, forward and
//! backward, and on hand-computed values.

use perceiver_nn::ops::{batch_norm2d, batch_norm2d_train, conv2d, max_pool2d};
use perceiver_nn::{BatchNorm2d, Conv2d, Conv2dSpec, MaxPool2d, ParamStore};
use perceiver_tensor::{Result, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(seed))
}

/// Asserts `|a - b| <= tol·(1 + |b|)` elementwise.
#[track_caller]
fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}, element {i}: {x} vs {y}"
        );
    }
}

/// The output of `f` on tracked copies of `inputs` and the gradients of `Σ out ⊙ r` for them.
fn run_with_grads(
    inputs: &[Tensor],
    r: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
    let out = f(&leaves)?;
    let grads = out.mul(r)?.sum_all().backward()?;
    let g = leaves
        .iter()
        .map(|l| grads.get(l).expect("a gradient").to_vec())
        .collect();
    Ok((out.to_vec(), g))
}

/// Naive convolution of `x: [B, H, W, Ci]` with `w: [Co, Ci, kh, kw]`: the output and, for the
/// output gradient `g`, the gradients of `x`, `w` and the bias, by direct loops in f64.
fn naive_conv(
    x: &Tensor,
    w: &Tensor,
    bias: &[f32],
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    g: Option<&Tensor>,
) -> (Vec<f32>, [Vec<f32>; 3]) {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (b, h, wd, ci) = (xs[0], xs[1], xs[2], xs[3]);
    let (co, kh, kw) = (ws[0], ws[2], ws[3]);
    let (ho, wo) = ((h + 2 * ph - kh) / sh + 1, (wd + 2 * pw - kw) / sw + 1);
    let (xv, wv) = (x.to_vec(), w.to_vec());
    let gv = g.map(|g| g.to_vec());
    let mut y = vec![0.0f64; b * ho * wo * co];
    let (mut dx, mut dw, mut db) = (
        vec![0.0f64; xv.len()],
        vec![0.0f64; wv.len()],
        vec![0.0f64; co],
    );
    for n in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..co {
                    let yi = ((n * ho + oy) * wo + ox) * co + o;
                    let gy = gv.as_ref().map_or(0.0, |g| g[yi] as f64);
                    let mut acc = bias.get(o).copied().unwrap_or(0.0) as f64;
                    db[o] += gy;
                    for i in 0..ci {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let (iy, ix) = (oy * sh + ki, ox * sw + kj);
                                if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                    continue;
                                }
                                let xi = ((n * h + iy - ph) * wd + ix - pw) * ci + i;
                                let wi = ((o * ci + i) * kh + ki) * kw + kj;
                                acc += xv[xi] as f64 * wv[wi] as f64;
                                dx[xi] += gy * wv[wi] as f64;
                                dw[wi] += gy * xv[xi] as f64;
                            }
                        }
                    }
                    y[yi] = acc;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
    (f(y), [f(dx), f(dw), f(db)])
}

#[test]
fn conv2d_matches_naive_loops() -> Result<()> {
    // (x, Cout, kernel, stride, padding): small odd cases; the preprocessor's 7x7/2/3 on
    // enough pixels for the parallel patch building; a batch split into several chunks
    let cases: &[(
        [usize; 4],
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
    )] = &[
        ([2, 5, 4, 2], 3, (3, 3), (1, 1), (1, 1)),
        ([1, 7, 5, 3], 2, (3, 3), (2, 2), (1, 1)),
        ([2, 3, 3, 4], 3, (1, 1), (1, 1), (0, 0)),
        ([2, 4, 6, 2], 2, (2, 3), (1, 2), (0, 1)),
        ([2, 5, 5, 2], 2, (1, 1), (2, 2), (0, 0)),
        ([3, 32, 24, 3], 8, (7, 7), (2, 2), (3, 3)),
        ([7, 64, 64, 3], 2, (7, 7), (1, 1), (3, 3)),
    ];
    for (i, &(xs, co, (kh, kw), s, p)) in cases.iter().enumerate() {
        let seed = 100 * i as u64;
        let x = randn(&xs, seed);
        let w = randn(&[co, xs[3], kh, kw], seed + 1);
        let b = randn(&[co], seed + 2);
        let (ho, wo) = (
            (xs[1] + 2 * p.0 - kh) / s.0 + 1,
            (xs[2] + 2 * p.1 - kw) / s.1 + 1,
        );
        let r = randn(&[xs[0], ho, wo, co], seed + 3);
        let (y, grads) = run_with_grads(&[x.clone(), w.clone(), b.clone()], &r, |t| {
            conv2d(&t[0], &t[1], Some(&t[2]), s, p)
        })?;
        let (ny, [ndx, ndw, ndb]) = naive_conv(&x, &w, &b.to_vec(), s, p, Some(&r));
        let what = format!("case {i}");
        close(&y, &ny, 1e-4, &format!("{what}: y"));
        close(&grads[0], &ndx, 1e-4, &format!("{what}: dx"));
        close(&grads[1], &ndw, 1e-4, &format!("{what}: dw"));
        close(&grads[2], &ndb, 1e-4, &format!("{what}: db"));
    }
    Ok(())
}

#[test]
fn conv2d_known_values() -> Result<()> {
    // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], kernel [[1, 2], [3, 4]]
    let x = Tensor::arange(1.0, 10.0, 1.0)?.reshape(&[1, 3, 3, 1])?;
    let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?;
    let y = conv2d(&x, &w, None, (1, 1), (0, 0))?;
    assert_eq!(y.shape(), &[1, 2, 2, 1]);
    assert_eq!(y.to_vec(), vec![37.0, 47.0, 67.0, 77.0]);
    // stride 2, padding 1: the windows start at (-1, -1), (-1, 1), (1, -1), (1, 1); a bias
    let y = conv2d(
        &x,
        &w,
        Some(&Tensor::scalar(0.5).reshape(&[1])?),
        (2, 2),
        (1, 1),
    )?;
    assert_eq!(y.to_vec(), vec![4.5, 18.5, 36.5, 77.5]);
    // two input channels, two output channels: the channels-last input meets [Co, Ci, kh, kw]
    let x = Tensor::from_vec(vec![1.0, 10.0, 2.0, 20.0], &[1, 1, 2, 2])?;
    let w = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 1.0, 0.0], &[2, 2, 1, 2])?;
    // out 0: x[c0, col 0]·1 + x[c1, col 1]·1 = 1 + 20; out 1: -x[c0, col 1] + x[c1, col 0]
    let y = conv2d(&x, &w, None, (1, 1), (0, 0))?;
    assert_eq!(y.to_vec(), vec![21.0, 8.0]);
    Ok(())
}

#[test]
fn conv2d_refuses_bad_arguments() {
    let x = Tensor::ones(&[1, 5, 5, 3]);
    let w = Tensor::ones(&[4, 3, 3, 3]);
    assert!(conv2d(&x, &Tensor::ones(&[4, 2, 3, 3]), None, (1, 1), (0, 0)).is_err());
    assert!(conv2d(&x, &Tensor::ones(&[4, 3, 3]), None, (1, 1), (0, 0)).is_err());
    assert!(conv2d(&Tensor::ones(&[5, 5, 3]), &w, None, (1, 1), (0, 0)).is_err());
    assert!(conv2d(&x, &w, Some(&Tensor::ones(&[3])), (1, 1), (0, 0)).is_err());
    assert!(conv2d(&x, &w, None, (0, 1), (0, 0)).is_err());
    assert!(conv2d(&Tensor::ones(&[1, 2, 2, 3]), &w, None, (1, 1), (0, 0)).is_err());
    assert!(conv2d(&Tensor::ones(&[1, 2, 2, 3]), &w, None, (1, 1), (1, 1)).is_ok());
}

/// Batch norm as a composition of tensor ops: `(x - μ)/√(σ² + eps)·γ + β`, with the batch's
/// mean and biased variance over `(batch, H, W)` when `running` is `None`.
fn composed_batch_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    eps: f32,
) -> Result<Tensor> {
    let (mean, var) = match running {
        Some((m, v)) => (m.clone(), v.clone()),
        None => {
            let m = x.mean(&[0, 1, 2], false)?;
            let d = x.sub(&m)?;
            (m, d.mul(&d)?.mean(&[0, 1, 2], false)?)
        }
    };
    x.sub(&mean)?
        .div(&var.add_scalar(eps).sqrt())?
        .mul(w)?
        .add(b)
}

#[test]
fn batch_norm2d_matches_its_composition() -> Result<()> {
    // small shapes and one large enough for the parallel passes
    for (i, shape) in [[2, 3, 4, 3], [1, 1, 5, 2], [4, 40, 30, 64]]
        .iter()
        .enumerate()
    {
        let seed = 10 * i as u64;
        let c = shape[3];
        let x = randn(shape, seed).affine(3.0, 1.5);
        let (w, b) = (randn(&[c], seed + 1), randn(&[c], seed + 2));
        let rm = randn(&[c], seed + 3);
        let rv = randn(&[c], seed + 4).powf(2.0).add_scalar(0.5);
        let r = randn(shape, seed + 5);
        let inputs = [x.clone(), w.clone(), b.clone()];
        let what = format!("shape {shape:?}");

        let (y, g) = run_with_grads(&inputs, &r, |t| {
            batch_norm2d(&t[0], Some(&t[1]), Some(&t[2]), &rm, &rv, 1e-5)
        })?;
        let (ry, rg) = run_with_grads(&inputs, &r, |t| {
            composed_batch_norm(&t[0], &t[1], &t[2], Some((&rm, &rv)), 1e-5)
        })?;
        close(&y, &ry, 1e-5, &format!("{what}: eval y"));
        for (k, name) in ["dx", "dw", "db"].iter().enumerate() {
            close(&g[k], &rg[k], 1e-3, &format!("{what}: eval {name}"));
        }

        let (y, g) = run_with_grads(&inputs, &r, |t| {
            Ok(batch_norm2d_train(&t[0], Some(&t[1]), Some(&t[2]), 1e-5)?.0)
        })?;
        let (ry, rg) = run_with_grads(&inputs, &r, |t| {
            composed_batch_norm(&t[0], &t[1], &t[2], None, 1e-5)
        })?;
        close(&y, &ry, 1e-4, &format!("{what}: train y"));
        for (k, name) in ["dx", "dw", "db"].iter().enumerate() {
            close(&g[k], &rg[k], 2e-3, &format!("{what}: train {name}"));
        }
    }
    Ok(())
}

#[test]
fn batch_norm2d_train_statistics_and_running_update() -> Result<()> {
    let x = randn(&[3, 4, 5, 2], 1).affine(2.0, -1.0);
    let (_, stats) = batch_norm2d_train(&x, None, None, 1e-5)?;
    let v = x.to_vec();
    for j in 0..2 {
        let col: Vec<f64> = v.iter().skip(j).step_by(2).map(|&a| a as f64).collect();
        let n = col.len() as f64;
        let mean = col.iter().sum::<f64>() / n;
        let ss = col.iter().map(|a| (a - mean).powi(2)).sum::<f64>();
        close(&[stats.mean.to_vec()[j]], &[mean as f32], 1e-6, "mean");
        close(
            &[stats.var.to_vec()[j]],
            &[(ss / n) as f32],
            1e-6,
            "biased var",
        );
        let unbiased = (ss / (n - 1.0)) as f32;
        close(
            &[stats.var_unbiased.to_vec()[j]],
            &[unbiased],
            1e-6,
            "unbiased var",
        );
    }
    let (rm, rv) = stats.update_running(&Tensor::zeros(&[2]), &Tensor::ones(&[2]), 0.1)?;
    let expect_m: Vec<f32> = stats.mean.to_vec().iter().map(|m| 0.1 * m).collect();
    let expect_v: Vec<f32> = stats
        .var_unbiased
        .to_vec()
        .iter()
        .map(|v| 0.9 + 0.1 * v)
        .collect();
    close(&rm.to_vec(), &expect_m, 1e-6, "running mean");
    close(&rv.to_vec(), &expect_v, 1e-6, "running var");
    assert!(stats
        .update_running(&Tensor::zeros(&[3]), &Tensor::ones(&[2]), 0.1)
        .is_err());

    // one value per channel cannot be normalised by its own statistics; bad shapes
    assert!(batch_norm2d_train(&Tensor::ones(&[1, 1, 1, 3]), None, None, 1e-5).is_err());
    let (m, v) = (Tensor::zeros(&[2]), Tensor::ones(&[2]));
    assert!(batch_norm2d(&x, None, None, &Tensor::zeros(&[3]), &v, 1e-5).is_err());
    assert!(batch_norm2d(&x, Some(&Tensor::ones(&[3])), None, &m, &v, 1e-5).is_err());
    assert!(batch_norm2d(&x, None, None, &m, &Tensor::full(&[2], -1.0), 1e-5).is_err());
    assert!(batch_norm2d(&x.reshape(&[12, 5, 2])?, None, None, &m, &v, 1e-5).is_err());
    Ok(())
}

/// Naive max pooling with PyTorch's rules (`-∞` padding, first maximum wins): the output and
/// the input gradient for the output gradient `g`.
fn naive_max_pool(
    x: &Tensor,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    g: &Tensor,
) -> (Vec<f32>, Vec<f32>) {
    let s = x.shape().to_vec();
    let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
    let (ho, wo) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let (xv, gv) = (x.to_vec(), g.to_vec());
    let (mut y, mut dx) = (vec![0.0; b * ho * wo * c], vec![0.0; xv.len()]);
    for n in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                for j in 0..c {
                    let (mut best, mut at) = (f32::NEG_INFINITY, None);
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let (iy, ix) = (
                                (oy * sh + ki) as isize - ph as isize,
                                (ox * sw + kj) as isize - pw as isize,
                            );
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xi = ((n * h + iy as usize) * w + ix as usize) * c + j;
                            if at.is_none() || xv[xi] > best {
                                (best, at) = (xv[xi], Some(xi));
                            }
                        }
                    }
                    let yi = ((n * ho + oy) * wo + ox) * c + j;
                    y[yi] = best;
                    dx[at.expect("a window holds a pixel")] += gv[yi];
                }
            }
        }
    }
    (y, dx)
}

#[test]
fn max_pool2d_matches_naive_loops() -> Result<()> {
    // random values, and small integers (many ties: the first maximum takes the gradient)
    let cases: &[([usize; 4], (usize, usize), (usize, usize), (usize, usize))] = &[
        ([2, 5, 5, 3], (3, 3), (2, 2), (1, 1)),
        ([1, 6, 7, 2], (2, 2), (2, 2), (0, 0)),
        ([2, 7, 4, 1], (3, 2), (1, 2), (1, 1)),
        ([2, 9, 9, 2], (7, 7), (2, 2), (3, 3)),
        ([4, 56, 48, 64], (3, 3), (2, 2), (1, 1)),
    ];
    for (i, &(shape, k, s, p)) in cases.iter().enumerate() {
        let seed = 10 * i as u64;
        let ties = Tensor::from_vec(
            randn(&shape, seed + 1)
                .to_vec()
                .iter()
                .map(|v| (v * 1.5).round())
                .collect(),
            &shape,
        )?;
        for x in [randn(&shape, seed), ties] {
            let (ho, wo) = (
                (shape[1] + 2 * p.0 - k.0) / s.0 + 1,
                (shape[2] + 2 * p.1 - k.1) / s.1 + 1,
            );
            let r = randn(&[shape[0], ho, wo, shape[3]], seed + 2);
            let (y, g) =
                run_with_grads(std::slice::from_ref(&x), &r, |t| max_pool2d(&t[0], k, s, p))?;
            let (ny, ndx) = naive_max_pool(&x, k, s, p, &r);
            assert_eq!(y, ny, "case {i}: y");
            close(&g[0], &ndx, 1e-6, &format!("case {i}: dx"));
        }
    }
    Ok(())
}

#[test]
fn max_pool2d_known_values() -> Result<()> {
    // 5x5, 3x3 / 2 / 1 -> 3x3; increasing values: each window's bottom-right pixel
    let x = Tensor::arange(0.0, 25.0, 1.0)?.reshape(&[1, 5, 5, 1])?;
    let y = max_pool2d(&x, (3, 3), (2, 2), (1, 1))?;
    assert_eq!(y.shape(), &[1, 3, 3, 1]);
    assert_eq!(
        y.to_vec(),
        vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]
    );
    // decreasing (all negative) values: the padding is -∞, not 0
    let y = max_pool2d(&x.neg(), (3, 3), (2, 2), (1, 1))?;
    assert_eq!(
        y.to_vec(),
        vec![0.0, -1.0, -3.0, -5.0, -6.0, -8.0, -15.0, -16.0, -18.0]
    );
    // ties: the first maximum of the window (row-major) receives the gradient
    let x = Tensor::from_vec(vec![1.0, 2.0, 2.0, 0.0], &[1, 2, 2, 1])?.requires_grad();
    let grads = max_pool2d(&x, (2, 2), (1, 1), (0, 0))?
        .sum_all()
        .backward()?;
    assert_eq!(
        grads.get(&x).expect("a gradient").to_vec(),
        vec![0.0, 1.0, 0.0, 0.0]
    );
    // a NaN is the window's maximum
    let x = Tensor::from_vec(vec![1.0, f32::NAN, 3.0, 0.0], &[1, 2, 2, 1])?;
    assert!(max_pool2d(&x, (2, 2), (1, 1), (0, 0))?.to_vec()[0].is_nan());
    // padding beyond half the kernel, zero stride, a window larger than the padded input
    assert!(max_pool2d(&x, (3, 3), (2, 2), (2, 2)).is_err());
    assert!(max_pool2d(&x, (2, 2), (0, 1), (0, 0)).is_err());
    assert!(max_pool2d(&x, (3, 3), (1, 1), (0, 0)).is_err());
    Ok(())
}

#[test]
fn layers_wrap_the_ops_with_pytorch_names() -> Result<()> {
    let mut store = ParamStore::new();
    let spec = Conv2dSpec {
        in_channels: 3,
        out_channels: 4,
        kernel: (7, 7),
        stride: (2, 2),
        padding: (3, 3),
        bias: false,
    };
    let conv = Conv2d::new(&mut store, "convnet.conv", spec, &mut Rng::new(0))?;
    let mut bn = BatchNorm2d::new(&mut store, "convnet.batchnorm", 4, 1e-5, 0.1)?;
    let pool = MaxPool2d {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
    };
    let mut names: Vec<&str> = store.names().collect();
    names.sort_unstable();
    let expected = [
        "convnet.batchnorm.bias",
        "convnet.batchnorm.weight",
        "convnet.conv.weight",
    ];
    assert_eq!(names, expected, "running statistics are not parameters");
    assert_eq!(conv.weight.shape(), vec![4, 3, 7, 7]);
    let bound = 1.0 / (3.0f32 * 49.0).sqrt();
    assert!(conv
        .weight
        .value()
        .to_vec()
        .iter()
        .all(|v| v.abs() <= bound));

    let x = randn(&[2, 16, 12, 3], 1);
    let h = conv.forward(&x)?;
    assert_eq!(
        h.to_vec(),
        conv2d(&x, &conv.weight.value(), None, (2, 2), (3, 3))?.to_vec()
    );
    assert_eq!(h.shape(), &[2, 8, 6, 4]);

    // train mode updates the running statistics as PyTorch does, eval mode uses them
    let (_, stats) = batch_norm2d_train(&h, None, None, 1e-5)?;
    let y = bn.forward_train(&h)?;
    assert_eq!(bn.num_batches_tracked(), 1);
    let (rm, rv) = bn.running_stats();
    let em: Vec<f32> = stats.mean.to_vec().iter().map(|m| 0.1 * m).collect();
    let ev: Vec<f32> = stats
        .var_unbiased
        .to_vec()
        .iter()
        .map(|v| 0.9 + 0.1 * v)
        .collect();
    close(&rm.to_vec(), &em, 1e-6, "running mean");
    close(&rv.to_vec(), &ev, 1e-6, "running var");
    let (mean, var) = (randn(&[4], 2), Tensor::full(&[4], 2.0));
    bn.load_running_stats(&mean, &var, 7)?;
    assert_eq!(bn.num_batches_tracked(), 7);
    assert!(bn
        .load_running_stats(&Tensor::zeros(&[3]), &var, 0)
        .is_err());
    let eval = bn.forward(&h)?;
    let expect = batch_norm2d(&h, None, None, &mean, &var, 1e-5)?; // weight 1, bias 0
    assert_eq!(eval.to_vec(), expect.to_vec());

    let out = pool.forward(&y.relu())?;
    assert_eq!(out.shape(), &[2, 4, 3, 4]);
    assert!(out.to_vec().iter().all(|&v| v >= 0.0));
    // the whole preprocessor differentiates into every parameter
    let grads = out.sum_all().backward()?;
    for p in store.iter() {
        assert!(p.grad(&grads).is_ok(), "{} has a gradient", p.name());
    }
    Ok(())
}
