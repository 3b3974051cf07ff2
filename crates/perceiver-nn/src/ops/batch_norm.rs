//! `batch_norm2d`: batch normalisation over the channels (last axis) of channels-last
//! images `[batch, H, W, C]`, in inference mode (given running statistics) and in training
//! mode (statistics of the batch).
//!
//! Per channel, `y = (x - μ)·s·γ + β` with `s = 1/√(σ² + eps)`; `μ, σ²` are the running
//! statistics in inference mode, the batch's mean and biased variance over `(batch, H, W)` in
//! training mode (PyTorch's `BatchNorm2d`). The per-channel sums run in f64, in parallel over
//! blocks of rows added in a fixed order (the same result on any number of threads).
//!
//! Backward with `x̂ = (x - μ)·s` and `N` rows: `dβ = Σ g`, `dγ = Σ g·x̂`; inference mode
//! `dx = g·γ·s`; training mode (`μ, σ²` depend on `x`)
//! `dx = γ·s·(g - dβ/N - x̂·dγ/N)`.

use perceiver_kernels::PAR_THRESHOLD;
use perceiver_tensor::layout::check_vector;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, Result, Tensor};
use rayon::prelude::*;

/// Rows per block of the per-channel reductions.
const BLOCK_ROWS: usize = 1024;

/// The statistics of a training-mode batch, per channel (`[C]` each): what a caller needs to
/// update running statistics as PyTorch does (see [`BatchStats::update_running`]).
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// The batch mean over `(batch, H, W)`.
    pub mean: Tensor,
    /// The biased variance (divided by `N`), the one that normalised the batch.
    pub var: Tensor,
    /// The unbiased variance (divided by `N - 1`), the one running statistics track.
    pub var_unbiased: Tensor,
}

impl BatchStats {
    /// PyTorch's update with `momentum`: `running = (1 - m)·running + m·batch`, with the
    /// batch mean for `running_mean` and the unbiased variance for `running_var` (both `[C]`).
    #[track_caller]
    pub fn update_running(
        &self,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
    ) -> Result<(Tensor, Tensor)> {
        let c = self.mean.numel();
        check_vector("BatchStats::update_running", Some(running_mean), c, || {
            "the running mean must be [C]".into()
        })?;
        check_vector("BatchStats::update_running", Some(running_var), c, || {
            "the running variance must be [C]".into()
        })?;
        let mix = |run: &Tensor, batch: &Tensor| {
            let v: Vec<f32> = run
                .to_vec()
                .iter()
                .zip(batch.to_vec())
                .map(|(r, b)| (1.0 - momentum) * r + momentum * b)
                .collect();
            Tensor::from_parts(v, &[c])
        };
        Ok((
            mix(running_mean, &self.mean),
            mix(running_var, &self.var_unbiased),
        ))
    }
}

/// Batch normalisation of `x: [batch, H, W, C]` with the running statistics `running_mean`,
/// `running_var` (`[C]`, constants: they receive no gradient) and the optional affine
/// `weight` (γ) and `bias` (β), `[C]` each: PyTorch's `BatchNorm2d` in eval mode.
///
/// ```
/// use perceiver_nn::ops::batch_norm2d;
/// use perceiver_tensor::Tensor;
/// let x = Tensor::full(&[1, 2, 2, 3], 3.0);
/// let (mean, var) = (Tensor::ones(&[3]), Tensor::full(&[3], 4.0));
/// let y = batch_norm2d(&x, None, None, &mean, &var, 0.0)?;
/// assert_eq!(y.to_vec(), vec![1.0; 12]); // (3 - 1) / √4
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn batch_norm2d(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    const OP: &str = "batch_norm2d";
    let c = check_args(OP, x, weight, bias, eps)?;
    check_vector(OP, Some(running_mean), c, || {
        "the running mean must be [C]".into()
    })?;
    check_vector(OP, Some(running_var), c, || {
        "the running variance must be [C]".into()
    })?;
    let var = running_var.to_vec();
    if let Some(v) = var.iter().find(|&&v| !(v + eps > 0.0)) {
        return Err(Error::invalid(
            OP,
            format!("running_var + eps must be positive, got a variance {v} with eps {eps}"),
        ));
    }
    let op = BatchNormOp {
        mean: running_mean.to_vec(),
        inv_std: var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
        batch_stats: false,
    };
    apply_custom(op, &[Some(x), weight, bias])
}

/// Batch normalisation of `x: [batch, H, W, C]` with the statistics of the batch (mean and
/// biased variance over `batch, H, W`), and the optional affine `weight` and `bias` (`[C]`):
/// PyTorch's `BatchNorm2d` in train mode. Returns the output and the batch's statistics, to
/// update running statistics with ([`BatchStats::update_running`]). Needs more than one value
/// per channel.
///
/// ```
/// use perceiver_nn::ops::batch_norm2d_train;
/// use perceiver_tensor::Tensor;
/// let x = Tensor::from_vec(vec![1.0, 3.0], &[2, 1, 1, 1])?;
/// let (y, stats) = batch_norm2d_train(&x, None, None, 0.0)?;
/// assert_eq!(y.to_vec(), vec![-1.0, 1.0]);
/// assert_eq!((stats.mean.to_vec(), stats.var.to_vec(), stats.var_unbiased.to_vec()),
///            (vec![2.0], vec![1.0], vec![2.0]));
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn batch_norm2d_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<(Tensor, BatchStats)> {
    const OP: &str = "batch_norm2d_train";
    let c = check_args(OP, x, weight, bias, eps)?;
    let n = x.numel() / c.max(1);
    if n < 2 {
        return Err(Error::invalid(
            OP,
            format!(
                "training needs more than one value per channel, got input {:?}",
                x.shape()
            ),
        ));
    }
    let xd = x.contiguous_data();
    let sums = channel_sums(n, c, |r, acc| {
        for (a, &v) in acc.iter_mut().zip(&xd[r * c..(r + 1) * c]) {
            a[0] += v as f64;
        }
    });
    let mean: Vec<f64> = sums.iter().map(|s| s[0] / n as f64).collect();
    let sq = channel_sums(n, c, |r, acc| {
        for ((a, &v), m) in acc.iter_mut().zip(&xd[r * c..(r + 1) * c]).zip(&mean) {
            a[0] += (v as f64 - m).powi(2);
        }
    });
    let var: Vec<f64> = sq.iter().map(|s| s[0] / n as f64).collect();
    let to_tensor = |v: Vec<f32>| Tensor::from_parts(v, &[c]);
    let stats = BatchStats {
        mean: to_tensor(mean.iter().map(|&m| m as f32).collect()),
        var: to_tensor(var.iter().map(|&v| v as f32).collect()),
        var_unbiased: to_tensor(sq.iter().map(|s| (s[0] / (n - 1) as f64) as f32).collect()),
    };
    let op = BatchNormOp {
        mean: stats.mean.to_vec(),
        inv_std: var
            .iter()
            .map(|&v| (1.0 / (v + eps as f64).sqrt()) as f32)
            .collect(),
        batch_stats: true,
    };
    Ok((apply_custom(op, &[Some(x), weight, bias])?, stats))
}

/// The channel count `C` of `x`, after checking its rank, the affine vectors and `eps`.
#[track_caller]
fn check_args(
    op: &'static str,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<usize> {
    let &[_, _, _, c] = x.shape() else {
        return Err(Error::invalid(
            op,
            format!("the input must be [batch, H, W, C], got {:?}", x.shape()),
        ));
    };
    check_vector(op, weight, c, || "the weight must be [C]".into())?;
    check_vector(op, bias, c, || "the bias must be [C]".into())?;
    if !(eps >= 0.0) {
        return Err(Error::invalid(op, format!("eps must be >= 0, got {eps}")));
    }
    Ok(c)
}

/// Two sums per channel over `n` rows of `c` channels: `f(row, acc)` adds row `row`'s terms
/// into `acc` (`[c]` pairs); in f64, over blocks of rows (in parallel when large) added in
/// block order.
fn channel_sums(n: usize, c: usize, f: impl Fn(usize, &mut [[f64; 2]]) + Sync) -> Vec<[f64; 2]> {
    let block = |b: usize| {
        let mut acc = vec![[0.0f64; 2]; c];
        for r in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(n) {
            f(r, &mut acc);
        }
        acc
    };
    let blocks = n.div_ceil(BLOCK_ROWS);
    let parts: Vec<Vec<[f64; 2]>> = if n * c >= PAR_THRESHOLD {
        (0..blocks).into_par_iter().map(block).collect()
    } else {
        (0..blocks).map(block).collect()
    };
    let mut total = vec![[0.0f64; 2]; c];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            t[0] += p[0];
            t[1] += p[1];
        }
    }
    total
}

/// Applies `body` to each `c`-channel row of `data` (in parallel when large) with its index.
fn for_rows(data: &mut [f32], c: usize, body: impl Fn(usize, &mut [f32]) + Sync) {
    if c == 0 {
        return;
    }
    if data.len() >= PAR_THRESHOLD {
        data.par_chunks_mut(BLOCK_ROWS * c)
            .enumerate()
            .for_each(|(b, blk)| {
                for (i, row) in blk.chunks_mut(c).enumerate() {
                    body(b * BLOCK_ROWS + i, row);
                }
            });
    } else {
        for (i, row) in data.chunks_mut(c).enumerate() {
            body(i, row);
        }
    }
}

/// `y = (x - mean)·inv_std·γ + β` on `[x, γ, β]`; `batch_stats` says whether `mean` and
/// `inv_std` came from `x` (training mode: the backward differentiates through them).
struct BatchNormOp {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    batch_stats: bool,
}

struct BatchNormBackward {
    x: Tensor,
    weight: Option<Vec<f32>>,
}

impl CustomOp for BatchNormOp {
    type Saved = BatchNormBackward;
    const NAME: &'static str = "batch_norm2d";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<BatchNormBackward> {
        let Some(x) = inputs[0] else {
            return Err(Error::invalid("batch_norm2d", "needs x"));
        };
        let c = self.mean.len();
        let weight = inputs[1].map(|w| w.to_vec());
        let bias = inputs[2].map(|b| b.to_vec());
        // per channel, y = x·scale + shift
        let scale: Vec<f32> = (0..c)
            .map(|j| self.inv_std[j] * weight.as_ref().map_or(1.0, |w| w[j]))
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|j| bias.as_ref().map_or(0.0, |b| b[j]) - self.mean[j] * scale[j])
            .collect();
        let mut y = x.contiguous_data().into_owned();
        for_rows(&mut y, c, |_, row| {
            for ((v, s), t) in row.iter_mut().zip(&scale).zip(&shift) {
                *v = *v * s + t;
            }
        });
        let y = Tensor::from_parts(y, x.shape());
        let saved = needs.iter().any(|&n| n).then(|| BatchNormBackward {
            x: x.clone(),
            weight,
        });
        Ok((y, saved))
    }

    fn backward(
        &self,
        saved: &BatchNormBackward,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let c = self.mean.len();
        let n = (g.numel() / c.max(1)).max(1) as f64;
        let (xd, gd) = (saved.x.contiguous_data(), g.contiguous_data());
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        // Σ g and Σ g·x̂ per channel (not needed for dx alone in inference mode)
        let sums = if needs[1] || needs[2] || self.batch_stats {
            channel_sums(n as usize, c, |r, acc| {
                let (gr, xr) = (&gd[r * c..(r + 1) * c], &xd[r * c..(r + 1) * c]);
                for (j, a) in acc.iter_mut().enumerate() {
                    let xhat = (xr[j] - mean[j]) * inv_std[j];
                    a[0] += gr[j] as f64;
                    a[1] += (gr[j] * xhat) as f64;
                }
            })
        } else {
            Vec::new()
        };
        let dx = needs[0].then(|| {
            let gamma_s: Vec<f32> = (0..c)
                .map(|j| saved.weight.as_ref().map_or(1.0, |w| w[j]) * inv_std[j])
                .collect();
            let mut dx = gd.to_vec();
            if self.batch_stats {
                let mg: Vec<f32> = sums.iter().map(|s| (s[0] / n) as f32).collect();
                let mgx: Vec<f32> = sums.iter().map(|s| (s[1] / n) as f32).collect();
                for_rows(&mut dx, c, |r, row| {
                    let xr = &xd[r * c..(r + 1) * c];
                    for (j, d) in row.iter_mut().enumerate() {
                        let xhat = (xr[j] - mean[j]) * inv_std[j];
                        *d = gamma_s[j] * (*d - mg[j] - xhat * mgx[j]);
                    }
                });
            } else {
                for_rows(&mut dx, c, |_, row| {
                    row.iter_mut().zip(&gamma_s).for_each(|(d, k)| *d *= k);
                });
            }
            Tensor::from_parts(dx, g.shape())
        });
        let sum_c = |i: usize| Tensor::from_parts(sums.iter().map(|s| s[i] as f32).collect(), &[c]);
        vec![dx, needs[1].then(|| sum_c(1)), needs[2].then(|| sum_c(0))]
    }
}
