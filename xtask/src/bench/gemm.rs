//! GEMM on the Perceiver's shapes: `perceiver_kernels::gemm::gemm` on row-major views, and the
//! same products through `Tensor::matmul` (which adds the output allocation and, for a batched
//! left operand, the batch folding).

use super::{Group, Point, Work};
use perceiver_kernels::gemm::{gemm, MatRef};
use perceiver_tensor::{Rng, Tensor};
use std::hint::black_box;

/// The `gemm` group.
pub const GROUP: Group = Group {
    name: "gemm",
    about: "f32 matrix products on Perceiver shapes, GFLOP/s",
    isolated: false,
    points,
};

/// One product `[m x k] x [k x n]`, with where it occurs.
struct Shape {
    m: usize,
    k: usize,
    n: usize,
    /// Where the shape comes from (configs of `docs/bench.md`).
    note: &'static str,
    /// In the `--quick` set.
    quick: bool,
    /// Batch for the `matmul` variant: the left operand is `[batch, m / batch, k]` (a Linear
    /// layer applied to a batch, folded into one GEMM by `matmul`).
    batch: usize,
}

#[rustfmt::skip]
const SHAPES: &[Shape] = &[
    Shape { m: 512, k: 1024, n: 3072, note: "B latents, 3 x 1024-wide projection", quick: true, batch: 1 },
    Shape { m: 2048, k: 128, n: 512, note: "A MLP up, batch 32 x 64 latents", quick: true, batch: 32 },
    Shape { m: 512, k: 1024, n: 1024, note: "B latent 1024 -> 1024 projection", quick: true, batch: 1 },
    Shape { m: 1024, k: 1024, n: 1024, note: "square reference", quick: true, batch: 1 },
    Shape { m: 2048, k: 512, n: 128, note: "A MLP down", quick: false, batch: 32 },
    Shape { m: 512, k: 1024, n: 4096, note: "B latent MLP up", quick: false, batch: 1 },
    Shape { m: 512, k: 4096, n: 1024, note: "B latent MLP down", quick: false, batch: 1 },
    Shape { m: 512, k: 64, n: 512, note: "B self-attention scores, one head", quick: false, batch: 1 },
    Shape { m: 50176, k: 261, n: 64, note: "B cross-attention K or V of the inputs", quick: false, batch: 1 },
    Shape { m: 25088, k: 67, n: 64, note: "A cross-attention K or V, batch 32", quick: false, batch: 32 },
];

fn dims(m: usize, k: usize, n: usize) -> String {
    format!("[{m}x{k}]x[{k}x{n}]")
}

fn random(len: usize, seed: u64) -> Vec<f32> {
    Tensor::randn(&[len], &mut Rng::new(seed)).to_vec()
}

/// `gemm` on contiguous row-major operands; with `b_transposed`, `B` is stored `[n x k]` and
/// read through a transposed view (the layout of `dA = dC·Bᵀ` in matmul's backward).
fn gemm_point(s: &Shape, b_transposed: bool) -> Point {
    let (m, k, n) = (s.m, s.k, s.n);
    let name = if b_transposed {
        "gemm, B transposed view"
    } else {
        "gemm"
    };
    Point {
        name: name.into(),
        shape: dims(m, k, n),
        note: s.note.into(),
        work: Work::Flops(2.0 * (m * k * n) as f64),
        setup: Box::new(move || {
            let a = random(m * k, 1);
            let b = random(k * n, 2);
            let mut c = vec![0.0f32; m * n];
            Box::new(move || {
                let bv = if b_transposed {
                    MatRef::row_major(&b, n, k).t()
                } else {
                    MatRef::row_major(&b, k, n)
                };
                gemm(1.0, MatRef::row_major(&a, m, k), bv, 0.0, &mut c);
                black_box(&mut c);
            })
        }),
    }
}

/// The same product through `Tensor::matmul`, with the batch split out when the shape has one.
fn matmul_point(s: &Shape) -> Point {
    let (m, k, n, batch) = (s.m, s.k, s.n, s.batch);
    let a_shape: Vec<usize> = if batch > 1 {
        vec![batch, m / batch, k]
    } else {
        vec![m, k]
    };
    let shape = if batch > 1 {
        format!("[{batch}x{}x{k}]x[{k}x{n}]", m / batch)
    } else {
        dims(m, k, n)
    };
    Point {
        name: "Tensor::matmul".into(),
        shape,
        note: s.note.into(),
        work: Work::Flops(2.0 * (m * k * n) as f64),
        setup: Box::new(move || {
            let mut rng = Rng::new(3);
            let a = Tensor::randn(&a_shape, &mut rng);
            let b = Tensor::randn(&[k, n], &mut rng);
            Box::new(move || {
                black_box(a.matmul(&b).expect("benchmark shapes agree"));
            })
        }),
    }
}

fn points(quick: bool) -> Vec<Point> {
    let shapes: Vec<&Shape> = SHAPES.iter().filter(|s| s.quick || !quick).collect();
    let mut out: Vec<Point> = shapes.iter().map(|s| gemm_point(s, false)).collect();
    if !quick {
        out.push(gemm_point(&SHAPES[0], true));
    }
    // In the quick set, matmul only on the first two shapes (the ones of the brief).
    let matmul_shapes = if quick { &shapes[..2] } else { &shapes[..] };
    out.extend(matmul_shapes.iter().map(|s| matmul_point(s)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_divide_rows() {
        for s in SHAPES {
            assert_eq!(
                s.m % s.batch,
                0,
                "{}: batch {} does not divide m",
                s.note,
                s.batch
            );
        }
    }
}
