//! Optimizers, gradient clipping and learning-rate schedules: hand-computed steps, weight-decay
//! exclusion, missing gradients, state round trips and small training runs.

use perceiver_nn::io::{load_params, load_safetensors, save_params, save_safetensors};
use perceiver_nn::optim::{
    clip_grad_norm, global_grad_norm, Adam, AdamConfig, Constant, ConstantThenCosine, Cosine,
    DecayRule, Lamb, LambConfig, LinearWarmup, LrSchedule, Optimizer, Sgd, SgdConfig, StepDecay,
};
use perceiver_nn::{Param, ParamStore};
use perceiver_tensor::{no_grad, Error, Grads, Result, Rng, Tensor};
use std::path::PathBuf;

// ----- helpers ------------------------------------------------------------------------------

/// Gradients equal to the given constants: the loss is `sum_p sum(p * c_p)`, so `dL/dp = c_p`.
fn const_grads(pairs: &[(&Param, &[f32])]) -> Grads {
    let mut loss: Option<Tensor> = None;
    for (p, c) in pairs {
        let c = Tensor::from_vec(c.to_vec(), &p.shape()).unwrap();
        let term = p.tensor().mul(&c).unwrap().sum_all();
        loss = Some(match loss {
            None => term,
            Some(l) => l.add(&term).unwrap(),
        });
    }
    loss.expect("at least one parameter").backward().unwrap()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w} (error {err:e})"
        );
    }
}

fn store(values: &[(&str, &[f32], &[usize])]) -> (ParamStore, Vec<Param>) {
    let mut s = ParamStore::new();
    let ps = values
        .iter()
        .map(|(n, v, shape)| {
            s.add(*n, Tensor::from_vec(v.to_vec(), shape).unwrap())
                .unwrap()
        })
        .collect();
    (s, ps)
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("optim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ----- SGD ----------------------------------------------------------------------------------

#[test]
fn sgd_momentum_by_hand() -> Result<()> {
    // mu = 0.9, lr = 0.1, constant g = [0.5, 1], w0 = [1, -2].
    // step 1: b = g = [0.5, 1];                 w = w - 0.1 b = [0.95, -2.1]
    // step 2: b = 0.9 [0.5, 1] + g = [0.95, 1.9]; w = [0.855, -2.29]
    // step 3: b = 0.9 [0.95, 1.9] + g = [1.355, 2.71]; w = [0.7195, -2.561]
    let (params, p) = store(&[("w", &[1.0, -2.0], &[1, 2])]);
    let mut opt = Sgd::new(SgdConfig::momentum(0.9))?;
    let want = [[0.95, -2.1], [0.855, -2.29], [0.7195, -2.561]];
    for (t, w) in want.iter().enumerate() {
        opt.step(&params, &const_grads(&[(&p[0], &[0.5, 1.0])]), 0.1)?;
        assert_close(
            &p[0].value().to_vec(),
            w,
            1e-6,
            &format!("sgd step {}", t + 1),
        );
    }
    assert_eq!(opt.steps(), 3);
    Ok(())
}

#[test]
fn sgd_nesterov_by_hand() -> Result<()> {
    // mu = 0.9, lr = 0.1, constant g = [0.5, 1], w0 = [1, -2].
    // step 1: b = g; d = g + 0.9 b = 1.9 g = [0.95, 1.9];         w = [0.905, -2.19]
    // step 2: b = 0.9 g + g = [0.95, 1.9]; d = g + 0.9 b = [1.355, 2.71]; w = [0.7695, -2.461]
    let (params, p) = store(&[("w", &[1.0, -2.0], &[1, 2])]);
    let mut opt = Sgd::new(SgdConfig::nesterov(0.9))?;
    for w in [[0.905, -2.19], [0.7695, -2.461]] {
        opt.step(&params, &const_grads(&[(&p[0], &[0.5, 1.0])]), 0.1)?;
        assert_close(&p[0].value().to_vec(), &w, 1e-6, "nesterov");
    }
    Ok(())
}

#[test]
fn sgd_weight_decay_skips_biases() -> Result<()> {
    // wd = 0.1, lr = 0.1, no momentum, g = [0.5, 1], both params start at [1, -2].
    // "w" (2-D) decays: g' = g + 0.1 w = [0.6, 0.8]; w = [1 - 0.06, -2 - 0.08] = [0.94, -2.08].
    // "b" (a bias) does not: w = [1 - 0.05, -2 - 0.1] = [0.95, -2.1].
    let (params, p) = store(&[("w", &[1.0, -2.0], &[1, 2]), ("b", &[1.0, -2.0], &[2])]);
    let mut opt = Sgd::new(SgdConfig::default().with_weight_decay(0.1))?;
    opt.step(
        &params,
        &const_grads(&[(&p[0], &[0.5, 1.0]), (&p[1], &[0.5, 1.0])]),
        0.1,
    )?;
    assert_close(
        &p[0].value().to_vec(),
        &[0.94, -2.08],
        1e-6,
        "decayed weight",
    );
    assert_close(&p[1].value().to_vec(), &[0.95, -2.1], 1e-6, "bias");
    Ok(())
}

#[test]
fn sgd_rejects_bad_config() {
    assert!(Sgd::new(SgdConfig {
        nesterov: true,
        ..SgdConfig::default()
    })
    .is_err());
    assert!(Sgd::new(SgdConfig::momentum(-0.1)).is_err());
    assert!(Sgd::new(SgdConfig::default().with_weight_decay(f32::NAN)).is_err());
}

// ----- Adam / AdamW ---------------------------------------------------------------------------

#[test]
fn adam_by_hand() -> Result<()> {
    // lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, w0 = [1, 1].
    // step 1, g = [0.5, -2]: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2,
    //   update = lr g / (|g| + eps) = lr sign(g) -> w = [0.9, 1.1].
    // step 2, g = [-1, 1]: m = 0.09 g1 + 0.1 g2 = [-0.055, -0.08], mhat = m / 0.19;
    //   v = 0.000999 g1^2 + 0.001 g2^2 = [0.00124975, 0.004996], vhat = v / 0.001999;
    //   w = w - 0.1 mhat / sqrt(vhat) = [0.93661035, 1.12663370].
    // step 3, g = [0.25, 0.5]: same recurrences with bc1 = 1 - 0.9^3, bc2 = 1 - 0.999^3
    //   (evaluated in f64 with a 10-line Python reference) -> [0.95027942, 1.13277259].
    let (params, p) = store(&[("w", &[1.0, 1.0], &[1, 2])]);
    let mut opt = Adam::new(AdamConfig::default())?;
    let gs: [[f32; 2]; 3] = [[0.5, -2.0], [-1.0, 1.0], [0.25, 0.5]];
    let want = [
        [0.9, 1.1],
        [0.936_610_354_2, 1.126_633_703_3],
        [0.950_279_420_3, 1.132_772_589_5],
    ];
    for (g, w) in gs.iter().zip(want) {
        opt.step(&params, &const_grads(&[(&p[0], g)]), 0.1)?;
        assert_close(&p[0].value().to_vec(), &w, 2e-6, "adam");
    }
    Ok(())
}

#[test]
fn adam_l2_decay_is_coupled() -> Result<()> {
    // Adam with L2 decay 0.1 (decay added to the gradient), lr = 0.1, w0 = [10, 1], g = [-0.5, -2].
    // step 1: g' = g + 0.1 w = [0.5, -1.9]: the decay flips the sign of the first gradient, and
    //   step 1 of Adam moves by lr sign(g') -> w = [9.9, 1.1] (plain Adam would give [10.1, 1.1]).
    // step 2: g' = [-0.5 + 0.99, -2 + 0.11] = [0.49, -1.89]; m = 0.09 [0.5, -1.9] + 0.1 g' =
    //   [0.094, -0.36]; v = 0.000999 [0.25, 3.61] + 0.001 [0.2401, 3.5721];
    //   w = w - 0.1 (m / 0.19) / sqrt(v / 0.001999) = [9.80005776, 1.19998590].
    let (params, p) = store(&[("w", &[10.0, 1.0], &[1, 2])]);
    let mut opt = Adam::new(AdamConfig::adam_l2(0.1))?;
    for w in [[9.9, 1.1], [9.800_057_760_7, 1.199_985_895_9]] {
        opt.step(&params, &const_grads(&[(&p[0], &[-0.5, -2.0])]), 0.1)?;
        assert_close(&p[0].value().to_vec(), &w, 2e-6, "adam l2");
    }
    assert_eq!(opt.state()[0].0, "adam.step");
    Ok(())
}

#[test]
fn adamw_by_hand() -> Result<()> {
    // AdamW, wd = 0.1, lr = 0.1, w0 = [1, 1]: each step first shrinks w by (1 - lr wd) = 0.99.
    // step 1, g = [0.5, -2]: w = 0.99 w - 0.1 sign(g) = [0.89, 1.09].
    // step 2, g = [-1, 1]: w = 0.99 w - (the Adam step of adam_by_hand, step 2:
    //   [-0.03661035, -0.02663370]) = [0.91771035, 1.10573370].
    let (params, p) = store(&[("w", &[1.0, 1.0], &[1, 2])]);
    let mut opt = Adam::new(AdamConfig::adamw(0.1))?;
    let gs: [[f32; 2]; 2] = [[0.5, -2.0], [-1.0, 1.0]];
    for (g, w) in gs
        .iter()
        .zip([[0.89, 1.09], [0.917_710_354_2, 1.105_733_703_3]])
    {
        opt.step(&params, &const_grads(&[(&p[0], g)]), 0.1)?;
        assert_close(&p[0].value().to_vec(), &w, 2e-6, "adamw");
    }
    assert!(opt.state().iter().all(|(n, _)| n.starts_with("adamw.")));
    Ok(())
}

// ----- LAMB -----------------------------------------------------------------------------------

#[test]
fn lamb_by_hand() -> Result<()> {
    // lr = 0.1, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-6.
    // "w" = [3, 4] (||w|| = 5, decays), "b" = [0, 0] (a bias: no decay, ||b|| = 0).
    // step 1, g = [0.5, -2] for both: mhat/(sqrt(vhat)+eps) = g/(|g|+1e-6) = [0.999998, -0.9999995]
    //   w: u = that + 0.1 [3, 4] = [1.299998, -0.5999995], ||u|| = 1.4317821,
    //      r = 5 / ||u|| = 3.4921564, w = w - 0.1 r u = [2.54602036, 4.20952921]
    //   b: ||b|| = 0 so r = 1: b = -0.1 u = [-0.0999998, 0.09999995]
    // step 2, g = [-1, 1]: mhat = (0.09 g1 + 0.1 g2) / 0.19, vhat as in adam_by_hand, step 2
    //   w: u = [-0.11150103, 0.15461605], r = 25.8074273 -> w = [2.83377583, 3.81050496]
    //   b: u = [-0.36610306, -0.26633687], r = 0.31237244 -> b = [-0.08856375, 0.10831958]
    //   (the f64 values come from a 15-line Python reference of the formulas above).
    let (params, p) = store(&[("w", &[3.0, 4.0], &[1, 2]), ("b", &[0.0, 0.0], &[2])]);
    let mut opt = Lamb::new(LambConfig::default().with_weight_decay(0.1))?;
    // (step, gradient of both, expected w, expected b, tolerance)
    let steps: [(usize, &[f32], [f64; 2], [f64; 2], f64); 2] = [
        (
            1,
            &[0.5, -2.0],
            [2.546_020_364, 4.209_529_211],
            [-0.099_999_8, 0.099_999_95],
            2e-6,
        ),
        (
            2,
            &[-1.0, 1.0],
            [2.833_775_831, 3.810_504_963],
            [-0.088_563_749, 0.108_319_580],
            1e-5,
        ),
    ];
    for (step, g, w, b, tol) in steps {
        opt.step(&params, &const_grads(&[(&p[0], g), (&p[1], g)]), 0.1)?;
        assert_close(
            &p[0].value().to_vec(),
            &w,
            tol,
            &format!("lamb w step {step}"),
        );
        assert_close(
            &p[1].value().to_vec(),
            &b,
            tol,
            &format!("lamb b step {step}"),
        );
    }
    assert_eq!(Lamb::trust_ratio(0.0, 3.0), 1.0);
    assert_eq!(Lamb::trust_ratio(3.0, 0.0), 1.0);
    assert_eq!(Lamb::trust_ratio(3.0, 1.5), 2.0);
    Ok(())
}

/// A parameter `[n, 1]` of n = 70,001 elements (enough for the parallel chunked paths) and a
/// gradient for it, drawn from `seed`.
fn large_param(seed: u64) -> (usize, Vec<f32>, Vec<f32>) {
    let n = 70_001;
    let mut rng = Rng::new(seed);
    let w0 = Tensor::randn(&[n, 1], &mut rng).to_vec();
    let g = Tensor::randn(&[n], &mut rng).to_vec();
    (n, w0, g)
}

#[test]
fn lamb_large_param_matches_f64_reference() -> Result<()> {
    // Big enough for the parallel chunked path; compared with a direct f64 evaluation.
    let (n, w0, g) = large_param(7);
    let (params, p) = store(&[("w", &w0, &[n, 1])]);
    let mut opt = Lamb::new(LambConfig::default())?;
    opt.step(&params, &const_grads(&[(&p[0], &g)]), 0.01)?;
    // step 1: u = g/(|g| + eps) + 0.1 w, r = ||w|| / ||u||, w -= lr r u.
    let u: Vec<f64> = (0..n)
        .map(|i| g[i] as f64 / ((g[i] as f64).abs() + 1e-6) + 0.1 * w0[i] as f64)
        .collect();
    let wn = w0.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let un = u.iter().map(|x| x * x).sum::<f64>().sqrt();
    let want: Vec<f64> = (0..n)
        .map(|i| w0[i] as f64 - 0.01 * (wn / un) * u[i])
        .collect();
    assert_close(&p[0].value().to_vec(), &want, 1e-5, "lamb large");
    Ok(())
}

#[test]
fn large_params_match_small_params() -> Result<()> {
    // SGD and Adam are elementwise: the chunked parallel path on a 70,001-element parameter must
    // give bit-identical results to the serial path on a copy of its first 100 elements.
    let (n, w0, g) = large_param(3);
    let make: [fn() -> Box<dyn Optimizer>; 3] = [
        || Box::new(Sgd::new(SgdConfig::nesterov(0.9).with_weight_decay(0.01)).unwrap()),
        || Box::new(Adam::new(AdamConfig::adamw(0.1)).unwrap()),
        || Box::new(Adam::new(AdamConfig::adam_l2(0.1)).unwrap()),
    ];
    for mk in make {
        let (params, p) = store(&[("big", &w0, &[n, 1]), ("small", &w0[..100], &[100, 1])]);
        let mut opt = mk();
        for _ in 0..3 {
            opt.step(
                &params,
                &const_grads(&[(&p[0], &g), (&p[1], &g[..100])]),
                0.05,
            )?;
        }
        assert_eq!(p[0].value().to_vec()[..100], p[1].value().to_vec()[..]);
    }
    Ok(())
}

// ----- weight decay rule, frozen parameters, missing gradients --------------------------------

#[test]
fn decay_rule_predicate() {
    let r = DecayRule::default();
    assert!(r.decays("layers.0.to_q.weight", &[8, 8]));
    assert!(r.decays("latents", &[16, 8]));
    assert!(!r.decays("layers.0.to_out.bias", &[8]));
    assert!(
        !r.decays("attn_bias", &[4, 4]),
        "names ending in `bias` are excluded whatever their rank"
    );
    assert!(!r.decays("layers.0.norm.weight", &[8]));
    assert!(
        !r.decays("encoder.LayerNorm.weight", &[2, 8]),
        "`norm` matches case-insensitively"
    );
    assert!(!r.decays("scale", &[8]), "1-D parameters are excluded");
    assert!(!r.decays("temperature", &[]), "scalars are excluded");
    let r = DecayRule::default().excluding(["latents"]);
    assert!(!r.decays("latents", &[16, 8]));
    assert!(r.decays("layers.0.to_q.weight", &[8, 8]));
    let all = DecayRule::all();
    assert!(all.decays("head.bias", &[3]) && all.decays("norm.weight", &[3]));
    assert!(!DecayRule::all()
        .excluding(["head.bias"])
        .decays("head.bias", &[3]));
}

#[test]
fn adamw_decay_exclusion_in_a_step() -> Result<()> {
    // Zero gradients: the Adam part of the update is 0 / (0 + eps) = 0, so only the decoupled
    // decay acts: w = w (1 - lr wd) = 0.98 w for lr = 0.2, wd = 0.1, on decayed parameters only.
    let ones: &[f32] = &[1.0, 1.0, 1.0, 1.0];
    let (params, p) = store(&[
        ("proj.weight", ones, &[2, 2]),
        ("proj.bias", &[1.0, 1.0], &[2]),
        ("norm.weight", ones, &[2, 2]),
        ("latents", ones, &[2, 2]),
        ("pos_emb", ones, &[2, 2]),
    ]);
    let cfg = AdamConfig {
        decay_rule: DecayRule::default().excluding(["latents"]),
        ..AdamConfig::adamw(0.1)
    };
    let mut opt = Adam::new(cfg)?;
    let zeros = [0.0f32; 4];
    let pairs: Vec<(&Param, &[f32])> = p.iter().map(|p| (p, &zeros[..p.numel()])).collect();
    opt.step(&params, &const_grads(&pairs), 0.2)?;
    let v = |name: &str| params.get(name).unwrap().value().to_vec()[0];
    assert!((v("proj.weight") - 0.98).abs() < 1e-7);
    assert!((v("pos_emb") - 0.98).abs() < 1e-7);
    assert_eq!(v("proj.bias"), 1.0);
    assert_eq!(v("norm.weight"), 1.0);
    assert_eq!(v("latents"), 1.0);
    Ok(())
}

#[test]
fn missing_gradient_is_an_error_unless_frozen() -> Result<()> {
    let (params, p) = store(&[
        ("a", &[1.0, 2.0], &[2]),
        ("b", &[3.0], &[1]),
        ("c", &[4.0], &[1]),
    ]);
    let grads = const_grads(&[(&p[0], &[1.0, 1.0])]);
    let opts: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(SgdConfig::momentum(0.9))?),
        Box::new(Adam::new(AdamConfig::default())?),
        Box::new(Lamb::new(LambConfig::default())?),
    ];
    for mut opt in opts {
        match opt.step(&params, &grads, 0.1) {
            Err(Error::NoGradient { name }) => assert_eq!(name, "b, c"),
            other => panic!("expected NoGradient, got {other:?}"),
        }
        // Nothing changed, not even the step count.
        assert_eq!(p[0].value().to_vec(), vec![1.0, 2.0]);
        assert_eq!(opt.steps(), 0);
    }
    // Frozen parameters need no gradient and are never updated, even when they have one.
    let mut sgd = Sgd::new(SgdConfig::default().freeze(["b", "c"]))?;
    sgd.step(&params, &grads, 0.1)?;
    assert_close(&p[0].value().to_vec(), &[0.9, 1.9], 1e-7, "unfrozen");
    let all = const_grads(&[(&p[0], &[1.0, 1.0]), (&p[1], &[1.0]), (&p[2], &[1.0])]);
    let mut adam = Adam::new(AdamConfig::default().freeze(["b", "c"]))?;
    adam.step(&params, &all, 0.1)?;
    assert_eq!(p[1].value().to_vec(), vec![3.0]);
    assert!(adam
        .state()
        .iter()
        .all(|(n, _)| !n.ends_with(".b") && !n.ends_with(".c")));
    Ok(())
}

#[test]
fn bad_learning_rate_is_rejected() -> Result<()> {
    let (params, p) = store(&[("a", &[1.0], &[1])]);
    let grads = const_grads(&[(&p[0], &[1.0])]);
    let mut opt = Adam::new(AdamConfig::default())?;
    for lr in [f32::NAN, -1.0, f32::INFINITY] {
        assert!(matches!(
            opt.step(&params, &grads, lr),
            Err(Error::InvalidArgument { .. })
        ));
    }
    assert_eq!(p[0].value().to_vec(), vec![1.0]);
    Ok(())
}

// ----- clipping -------------------------------------------------------------------------------

#[test]
fn clip_by_global_norm() -> Result<()> {
    // Gradients [3, 0] and [4]: global norm sqrt(9 + 0 + 16) = 5.
    let (params, p) = store(&[("a", &[1.0, 1.0], &[2]), ("b", &[1.0], &[1])]);
    let x = Tensor::from_vec(vec![2.0], &[1])?.requires_grad(); // a non-parameter leaf
    let make = || {
        let loss = p[0]
            .tensor()
            .mul(&Tensor::from_vec(vec![3.0, 0.0], &[2]).unwrap())
            .unwrap()
            .sum_all()
            .add(&p[1].tensor().mul(&x).unwrap().mul_scalar(2.0).sum_all())
            .unwrap();
        loss.backward().unwrap()
    };
    let mut grads = make();
    assert!((global_grad_norm(&params, &grads) - 5.0).abs() < 1e-6);
    // Below the threshold: unchanged.
    assert!((clip_grad_norm(&params, &mut grads, 10.0)? - 5.0).abs() < 1e-6);
    assert_eq!(p[0].grad(&grads)?.to_vec(), vec![3.0, 0.0]);
    // Above: every gradient scaled by 1 / 5; the returned norm is the one before clipping.
    assert!((clip_grad_norm(&params, &mut grads, 1.0)? - 5.0).abs() < 1e-6);
    assert_close(&p[0].grad(&grads)?.to_vec(), &[0.6, 0.0], 1e-6, "clipped a");
    assert_close(&p[1].grad(&grads)?.to_vec(), &[0.8], 1e-6, "clipped b");
    assert!((global_grad_norm(&params, &grads) - 1.0).abs() < 1e-6);
    // The non-parameter leaf keeps its gradient d(2 b x)/dx = 2 b = 2.
    assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0]);
    // Works under no_grad too, and rejects a bad threshold.
    let mut grads = make();
    let norm = no_grad(|| clip_grad_norm(&params, &mut grads, 2.5))?;
    assert!((norm - 5.0).abs() < 1e-6);
    assert_close(
        &p[1].grad(&grads)?.to_vec(),
        &[2.0],
        1e-6,
        "clipped under no_grad",
    );
    assert!(clip_grad_norm(&params, &mut grads, 0.0).is_err());
    assert!(clip_grad_norm(&params, &mut grads, f32::NAN).is_err());
    Ok(())
}

#[test]
fn clip_large_gradients() -> Result<()> {
    let n = 100_000;
    let (params, p) = store(&[("w", &vec![0.0; n], &[n])]);
    let mut grads = const_grads(&[(&p[0], &vec![0.5; n])]);
    // norm = 0.5 sqrt(n) = 158.11
    let norm = clip_grad_norm(&params, &mut grads, 1.0)?;
    assert!((norm as f64 - 0.5 * (n as f64).sqrt()).abs() < 1e-3);
    assert!((global_grad_norm(&params, &grads) - 1.0).abs() < 1e-5);
    Ok(())
}

// ----- schedules ------------------------------------------------------------------------------

fn close(a: f32, b: f64) -> bool {
    (a as f64 - b).abs() <= 1e-7 * b.abs().max(1e-3)
}

#[test]
fn schedules_at_specific_steps() {
    assert_eq!(Constant(0.1).lr(0), 0.1);
    assert_eq!(Constant(0.1).lr(1_000_000), 0.1);

    // The Perceiver ImageNet recipe in steps: 0.004, / 10 at 84, 102, 114.
    let s = StepDecay::new(0.004, vec![84, 102, 114], 0.1);
    for (t, want) in [
        (0, 4e-3),
        (83, 4e-3),
        (84, 4e-4),
        (101, 4e-4),
        (102, 4e-5),
        (113, 4e-5),
        (114, 4e-6),
        (500, 4e-6),
    ] {
        assert!(close(s.lr(t), want), "step decay at {t}: {}", s.lr(t));
    }

    // Cosine 1 -> 0.1 over 100: lr(t) = 0.1 + 0.9 (1 + cos(pi t / 100)) / 2.
    let c = Cosine::new(1.0, 0.1, 100);
    for (t, want) in [
        (0, 1.0),
        (25, 0.868_198_051_5),
        (50, 0.55),
        (75, 0.231_801_948_5),
        (100, 0.1),
        (300, 0.1),
    ] {
        assert!(close(c.lr(t), want), "cosine at {t}: {}", c.lr(t));
    }
    assert_eq!(Cosine::new(1.0, 0.2, 0).lr(0), 0.2);

    // Perceiver IO: 2e-3 constant for half of 100 steps, then cosine to 0 over the other 50.
    let s = ConstantThenCosine::new(2e-3, 100, 0.5);
    assert_eq!(s.decay_start(), 50);
    for (t, want) in [
        (0, 2e-3),
        (49, 2e-3),
        (50, 2e-3),
        (75, 1e-3),
        (100, 0.0),
        (1000, 0.0),
    ] {
        assert!(
            close(s.lr(t), want),
            "constant-then-cosine at {t}: {}",
            s.lr(t)
        );
    }
    // lr(60) = 2e-3 (1 + cos(pi 10 / 50)) / 2
    assert!(close(
        s.lr(60),
        2e-3 * 0.5 * (1.0 + (std::f64::consts::PI * 0.2).cos())
    ));
    assert_eq!(ConstantThenCosine::new(1.0, 10, 1.0).lr(9), 1.0);
    assert_eq!(ConstantThenCosine::new(1.0, 10, 0.0).lr(0), 1.0);

    // Warm-up over 10 steps from 0 to inner(0), then the inner schedule from its step 0.
    let w = LinearWarmup::new(10, Constant(1.0));
    for (t, want) in [(0, 0.0), (1, 0.1), (3, 0.3), (9, 0.9), (10, 1.0), (50, 1.0)] {
        assert!(close(w.lr(t), want), "warm-up at {t}: {}", w.lr(t));
    }
    let w = LinearWarmup::new(4, StepDecay::new(1.0, vec![2], 0.5));
    assert_eq!(
        [w.lr(0), w.lr(2), w.lr(4), w.lr(5), w.lr(6)],
        [0.0, 0.5, 1.0, 1.0, 0.5]
    );
    let w = LinearWarmup::new(0, Constant(0.3));
    assert_eq!(w.lr(0), 0.3);

    // Closures and boxed schedules are schedules.
    let f = |t: u64| 1.0 / (1 + t) as f32;
    assert_eq!(f.lr(3), 0.25);
    let boxed: Box<dyn LrSchedule> = Box::new(Cosine::new(1.0, 0.0, 2));
    assert!(close(boxed.lr(1), 0.5));
}

// ----- a small network ------------------------------------------------------------------------

/// A 2 -> 16 -> 3 MLP with tanh.
fn mlp(seed: u64) -> ParamStore {
    let mut rng = Rng::new(seed);
    let mut s = ParamStore::new();
    s.add(
        "fc1.weight",
        Tensor::randn(&[2, 16], &mut rng).mul_scalar(0.5),
    )
    .unwrap();
    s.add("fc1.bias", Tensor::zeros(&[16])).unwrap();
    s.add(
        "fc2.weight",
        Tensor::randn(&[16, 3], &mut rng).mul_scalar(0.5),
    )
    .unwrap();
    s.add("fc2.bias", Tensor::zeros(&[3])).unwrap();
    s
}

fn forward_loss(s: &ParamStore, x: &Tensor, y: &[usize]) -> Result<Tensor> {
    let p = |n: &str| s.get(n).unwrap().tensor();
    x.matmul(&p("fc1.weight"))?
        .add(&p("fc1.bias"))?
        .tanh()
        .matmul(&p("fc2.weight"))?
        .add(&p("fc2.bias"))?
        .cross_entropy(y, 0.0)
}

/// 3 Gaussian blobs (std 0.6) at radius 2, 30 points each.
fn blobs() -> (Tensor, Vec<usize>) {
    let mut rng = Rng::new(42);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..90 {
        let k = i % 3;
        let a = 2.0 * std::f32::consts::PI * k as f32 / 3.0;
        x.push(2.0 * a.cos() + 0.6 * rng.normal());
        x.push(2.0 * a.sin() + 0.6 * rng.normal());
        y.push(k);
    }
    (Tensor::from_vec(x, &[90, 2]).unwrap(), y)
}

fn train(
    opt: &mut dyn Optimizer,
    s: &ParamStore,
    steps: u64,
    lr: &dyn LrSchedule,
    clip: Option<f32>,
) -> Result<Vec<f32>> {
    let (x, y) = blobs();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = forward_loss(s, &x, &y)?;
        losses.push(loss.to_scalar()?);
        let mut grads = loss.backward()?;
        if let Some(c) = clip {
            clip_grad_norm(s, &mut grads, c)?;
        }
        opt.step(s, &grads, lr.lr(opt.steps()))?;
    }
    losses.push(forward_loss(s, &x, &y)?.to_scalar()?);
    Ok(losses)
}

#[test]
fn each_optimizer_trains_a_small_network() -> Result<()> {
    let cases: Vec<(&str, Box<dyn Optimizer>, Box<dyn LrSchedule>)> = vec![
        (
            "sgd-momentum",
            Box::new(Sgd::new(SgdConfig::momentum(0.9))?),
            Box::new(Constant(0.05)),
        ),
        (
            "sgd-nesterov-wd",
            Box::new(Sgd::new(SgdConfig::nesterov(0.9).with_weight_decay(1e-4))?),
            Box::new(Constant(0.05)),
        ),
        (
            "adam",
            Box::new(Adam::new(AdamConfig::default())?),
            Box::new(Constant(0.02)),
        ),
        (
            "adamw",
            Box::new(Adam::new(AdamConfig::adamw(0.01))?),
            Box::new(Cosine::new(0.02, 0.002, 100)),
        ),
        (
            "lamb",
            Box::new(Lamb::new(LambConfig::default())?),
            Box::new(ConstantThenCosine::new(0.02, 100, 0.5)),
        ),
    ];
    for (name, mut opt, lr) in cases {
        let s = mlp(1);
        let losses = train(opt.as_mut(), &s, 100, lr.as_ref(), Some(10.0))?;
        let (first, last) = (losses[0], *losses.last().unwrap());
        eprintln!("{name}: loss {first:.4} -> {last:.4}");
        assert!(
            last.is_finite() && last < 0.3 * first,
            "{name}: loss {first} -> {last}"
        );
        assert!(losses[50] < first, "{name}: no progress by step 50");
    }
    Ok(())
}

// ----- state save and resume ------------------------------------------------------------------

#[test]
fn resume_from_saved_state_is_exact() -> Result<()> {
    type Make = fn() -> Box<dyn Optimizer>;
    let cases: [(&str, Make); 4] = [
        ("sgd", || {
            Box::new(Sgd::new(SgdConfig::nesterov(0.9).with_weight_decay(0.01)).unwrap())
        }),
        ("adam", || {
            Box::new(Adam::new(AdamConfig::adam_l2(0.01)).unwrap())
        }),
        ("adamw", || {
            Box::new(Adam::new(AdamConfig::adamw(0.05)).unwrap())
        }),
        ("lamb", || {
            Box::new(Lamb::new(LambConfig::default()).unwrap())
        }),
    ];
    let dir = tmp_dir("resume");
    let schedule = LinearWarmup::new(2, Cosine::new(0.05, 0.0, 6));
    for (name, make) in cases {
        // Uninterrupted: 8 steps.
        let full = mlp(5);
        let mut opt = make();
        train(opt.as_mut(), &full, 8, &schedule, Some(1.0))?;

        // Interrupted after 3 steps: parameters and optimizer state go through files.
        let first = mlp(5);
        let mut opt = make();
        train(opt.as_mut(), &first, 3, &schedule, Some(1.0))?;
        let (pp, sp) = (
            dir.join(format!("{name}-params.safetensors")),
            dir.join(format!("{name}-optim.safetensors")),
        );
        save_params(&pp, &first, None)?;
        save_safetensors(&sp, &opt.state(), None)?;
        drop((first, opt));

        let resumed = mlp(99); // different initial values, overwritten by the checkpoint
        load_params(&pp, &resumed)?;
        let mut opt = make();
        opt.load_state(&load_safetensors(&sp)?.0)?;
        assert_eq!(opt.steps(), 3);
        train(opt.as_mut(), &resumed, 5, &schedule, Some(1.0))?;
        assert_eq!(opt.steps(), 8);

        for (a, b) in full.iter().zip(resumed.iter()) {
            assert_eq!(
                a.value().to_vec(),
                b.value().to_vec(),
                "{name}: `{}` differs after resuming",
                a.name()
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn state_names_and_load_errors() -> Result<()> {
    let s = mlp(0);
    let (x, y) = blobs();
    let grads = forward_loss(&s, &x, &y)?.backward()?;
    let mut adam = Adam::new(AdamConfig::default())?;
    adam.step(&s, &grads, 0.01)?;
    let state = adam.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"adam.step"));
    assert!(names.contains(&"adam.m.fc1.weight") && names.contains(&"adam.v.fc2.bias"));
    assert_eq!(state.len(), 1 + 2 * 4);
    let m = &state
        .iter()
        .find(|(n, _)| n == "adam.m.fc1.weight")
        .unwrap()
        .1;
    assert_eq!(m.shape(), &[2, 16]);

    let mut sgd = Sgd::new(SgdConfig::momentum(0.9))?;
    sgd.step(&s, &grads, 0.01)?;
    let sgd_state = sgd.state();
    assert!(sgd_state
        .iter()
        .any(|(n, _)| n == "sgd.momentum.fc1.weight"));

    // Another optimizer's state, a missing step, a lone buffer, an unknown buffer: errors.
    let mut lamb = Lamb::new(LambConfig::default())?;
    assert!(lamb.load_state(&state).is_err());
    let mut fresh = Adam::new(AdamConfig::default())?;
    assert!(fresh.load_state(&state[1..]).is_err());
    let lone: Vec<_> = state
        .iter()
        .filter(|(n, _)| !n.starts_with("adam.v.fc1.weight"))
        .cloned()
        .collect();
    assert!(fresh.load_state(&lone).is_err());
    let mut extra = state.clone();
    extra.push(("adam.u.fc1.weight".to_string(), Tensor::zeros(&[2, 16])));
    assert!(fresh.load_state(&extra).is_err());
    let mut bad_step = state.clone();
    bad_step[0].1 = Tensor::scalar(1.5);
    assert!(fresh.load_state(&bad_step).is_err());
    assert!(
        Adam::new(AdamConfig::adamw(0.1))?
            .load_state(&state)
            .is_err(),
        "adam state into adamw"
    );

    // A state whose shapes do not match the parameters is reported at the next step.
    let mut wrong = state.clone();
    for (n, t) in wrong.iter_mut() {
        if n.ends_with(".fc1.bias") {
            *t = Tensor::zeros(&[5]);
        }
    }
    fresh.load_state(&wrong)?;
    assert!(matches!(
        fresh.step(&s, &grads, 0.01),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}
