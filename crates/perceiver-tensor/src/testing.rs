//! Gradient checking, shared by the tests of every crate that defines differentiable ops.
//!
//! [`check_gradients`] compares the gradients autograd computes with central differences. The
//! output is scalarised with a fixed random projection, `L = Σ out ⊙ R` (a plain sum would hide
//! bugs: the sum of a softmax is constant), and `L` is accumulated in f64. Small inputs are
//! checked element by element; large ones along a few random directions.

use crate::{no_grad, Result, Rng, Tensor};

/// Settings of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Step, relative: `h = step · max(1, |x|)`.
    pub step: f32,
    /// Allowed error relative to the largest gradient magnitude.
    pub rtol: f64,
    /// Allowed absolute error.
    pub atol: f64,
    /// Inputs with more elements than this are checked along random directions.
    pub max_elementwise: usize,
    /// Seed of the projection and of the directions.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-2,
            rtol: 1e-2,
            atol: 1e-3,
            max_elementwise: 256,
            seed: 1234,
        }
    }
}

fn projected(out: &Tensor, r: &[f32]) -> f64 {
    out.to_vec()
        .iter()
        .zip(r)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

impl GradCheck {
    /// Checks `f` at `inputs`. `f` receives tracked leaves (same values as `inputs`) and must be
    /// differentiable in all of them. Returns a description of the first mismatch.
    pub fn run(
        &self,
        inputs: &[Tensor],
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) -> std::result::Result<(), String> {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.contiguous().detach().requires_grad())
            .collect();
        let out = f(&leaves).map_err(|e| format!("forward failed: {e}"))?;
        let mut rng = Rng::new(self.seed);
        let r = Tensor::randn(out.shape(), &mut rng);
        let loss = out.mul(&r).map_err(|e| e.to_string())?.sum_all();
        let grads = loss
            .backward()
            .map_err(|e| format!("backward failed: {e}"))?;
        let rv = r.to_vec();
        let eval = |vals: &[Tensor]| -> std::result::Result<f64, String> {
            no_grad(|| f(vals))
                .map(|o| projected(&o, &rv))
                .map_err(|e| format!("forward failed: {e}"))
        };
        for (i, leaf) in leaves.iter().enumerate() {
            let analytic = grads
                .get(leaf)
                .ok_or_else(|| format!("input {i} received no gradient"))?
                .to_vec();
            let base = leaf.to_vec();
            let shape = leaf.shape().to_vec();
            let with = |data: Vec<f32>| -> Vec<Tensor> {
                let mut v: Vec<Tensor> = leaves.iter().map(|t| t.detach()).collect();
                v[i] = Tensor::from_vec(data, &shape).expect("same shape");
                v
            };
            let scale = analytic.iter().fold(0.0f64, |m, &g| m.max(g.abs() as f64));
            let tol = self.atol + self.rtol * scale;
            if base.len() <= self.max_elementwise {
                for j in 0..base.len() {
                    let h = self.step * base[j].abs().max(1.0);
                    let mut p = base.clone();
                    p[j] += h;
                    let mut m = base.clone();
                    m[j] -= h;
                    let hp = p[j] as f64 - base[j] as f64;
                    let hm = base[j] as f64 - m[j] as f64;
                    let num = (eval(&with(p))? - eval(&with(m))?) / (hp + hm);
                    let err = (num - analytic[j] as f64).abs();
                    if err > tol {
                        return Err(format!(
                            "input {i} {shape:?}, element {j}: numeric {num:.6} vs autograd {:.6} (error {err:.2e} > tolerance {tol:.2e})",
                            analytic[j]
                        ));
                    }
                }
            } else {
                for d in 0..3 {
                    let dir = Tensor::randn(&[base.len()], &mut rng).to_vec();
                    let norm = dir.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                    let h = self.step as f64;
                    let p: Vec<f32> = base
                        .iter()
                        .zip(&dir)
                        .map(|(x, v)| x + (h * *v as f64 / norm) as f32)
                        .collect();
                    let m: Vec<f32> = base
                        .iter()
                        .zip(&dir)
                        .map(|(x, v)| x - (h * *v as f64 / norm) as f32)
                        .collect();
                    let num = (eval(&with(p))? - eval(&with(m))?) / (2.0 * h);
                    let ana: f64 = analytic
                        .iter()
                        .zip(&dir)
                        .map(|(g, v)| *g as f64 * *v as f64 / norm)
                        .sum();
                    let err = (num - ana).abs();
                    let tol = self.atol + self.rtol * ana.abs().max(scale);
                    if err > tol {
                        return Err(format!(
                            "input {i} {shape:?}, direction {d}: numeric {num:.6} vs autograd {ana:.6} (error {err:.2e} > tolerance {tol:.2e})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// [`GradCheck::run`] with default settings.
pub fn check_gradients(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    GradCheck::default().run(inputs, f)
}
