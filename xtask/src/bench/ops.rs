//! Memory-bound ops through the `Tensor` API: softmax, layer norm and GELU, the elementwise work
//! that bench.md found dominating candle's CPU time. Throughput counts one read of the input and
//! one write of the output.

use super::{Group, Point, Work};
use perceiver_tensor::{GeluKind, Rng, Tensor};
use std::hint::black_box;

/// The `softmax` group.
pub const SOFTMAX: Group = Group {
    name: "softmax",
    about: "Tensor::softmax along the last axis",
    isolated: false,
    points: softmax_points,
};

/// The `layer_norm` group.
pub const LAYER_NORM: Group = Group {
    name: "layer_norm",
    about: "Tensor::layer_norm over the last axis, with weight and bias",
    isolated: false,
    points: layer_norm_points,
};

/// The `gelu` group.
pub const GELU: Group = Group {
    name: "gelu",
    about: "Tensor::gelu, exact (erf) and tanh-approximated",
    isolated: false,
    points: gelu_points,
};

fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join("x"))
}

/// Work of a map from `shape` to a tensor of the same shape.
fn same_shape_work(shape: &[usize]) -> Work {
    let elems = shape.iter().product::<usize>() as f64;
    Work::Bytes {
        bytes: 8.0 * elems,
        elems,
    }
}

fn input(shape: &[usize]) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(7))
}

/// Shapes of a group's points, each with where it comes from.
type Shapes = &'static [(&'static [usize], &'static str)];

/// The shapes `always`, then `full` unless `quick`.
fn shapes(
    quick: bool,
    always: Shapes,
    full: Shapes,
) -> impl Iterator<Item = (&'static [usize], &'static str)> + Clone {
    let full = if quick { &[][..] } else { full };
    always.iter().chain(full).copied()
}

/// A point of the op `name` on an input of `shape` (`note`: where the shape comes from) with
/// an output of the same shape: `routine(x, shape)` returns the timed call on the random input
/// `x`, allocated by the point's setup.
fn map_point(
    name: &str,
    shape: &[usize],
    note: &str,
    routine: impl FnOnce(Tensor, &[usize]) -> Box<dyn FnMut()> + Send + 'static,
) -> Point {
    let shape = shape.to_vec();
    Point {
        name: name.into(),
        shape: shape_str(&shape),
        note: note.into(),
        work: same_shape_work(&shape),
        setup: Box::new(move || routine(input(&shape), &shape)),
    }
}

fn softmax_points(quick: bool) -> Vec<Point> {
    let always: Shapes = &[
        (&[512, 512], "B self-attention probabilities, one head"),
        (&[256, 4096], "C-like long rows"),
    ];
    let full: Shapes = &[(&[8, 512, 512], "B self-attention probabilities, 8 heads")];
    shapes(quick, always, full)
        .map(|(shape, note)| {
            map_point("softmax", shape, note, |x, shape| {
                let axis = shape.len() - 1;
                Box::new(move || {
                    black_box(x.softmax(axis).expect("valid axis"));
                })
            })
        })
        .collect()
}

fn layer_norm_points(quick: bool) -> Vec<Point> {
    let always: Shapes = &[
        (&[512, 1024], "B latents"),
        (&[50176, 261], "B inputs with Fourier features"),
    ];
    let full: Shapes = &[
        (&[32, 64, 128], "A latents, batch 32"),
        (&[32, 784, 67], "A inputs with Fourier features, batch 32"),
    ];
    shapes(quick, always, full)
        .map(|(shape, note)| {
            map_point("layer_norm", shape, note, |x, shape| {
                let d = shape[shape.len() - 1];
                let mut rng = Rng::new(8);
                let w = Tensor::randn(&[d], &mut rng);
                let b = Tensor::randn(&[d], &mut rng);
                Box::new(move || {
                    black_box(
                        x.layer_norm(Some(&w), Some(&b), 1e-5)
                            .expect("valid shapes"),
                    );
                })
            })
        })
        .collect()
}

fn gelu_points(quick: bool) -> Vec<Point> {
    let shapes = shapes(
        quick,
        &[(&[512, 4096], "B latent MLP hidden")],
        &[(&[2048, 512], "A MLP hidden, batch 32")],
    );
    let mut out = Vec::new();
    for (kind, name) in [
        (GeluKind::Erf, "gelu (erf)"),
        (GeluKind::Tanh, "gelu (tanh)"),
    ] {
        for (shape, note) in shapes.clone() {
            out.push(map_point(name, shape, note, move |x, _| {
                Box::new(move || {
                    black_box(x.gelu(kind));
                })
            }));
        }
    }
    out
}
