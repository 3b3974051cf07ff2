//! A procedural point-cloud dataset: ten shape classes built as triangle meshes once, then for
//! each sample surface-sampled by area, posed with a random rotation, mild anisotropic scale
//! and translation, jittered with Gaussian noise and normalised to the unit sphere. Sample `i`
//! is a pure function of `(seed, i)`; labels cycle through the classes.

use super::mesh::Mesh;
use super::sampling::{normalize_points, sample_surface, Scaling};
use crate::dataset::{generated_dataset, Split};
use crate::error::Result;
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::f32::consts::PI;

/// The class names, in label order.
pub const POINT_SHAPE_CLASSES: [&str; 10] = [
    "sphere",
    "cube",
    "cylinder",
    "cone",
    "torus",
    "pyramid",
    "tetrahedron",
    "octahedron",
    "capsule",
    "hemisphere",
];

/// Parameters of [`PointShapes`].
///
/// ```
/// use perceiver_data::points::{PointShapes, PointShapesConfig};
/// use perceiver_data::{Dataset, Split};
/// assert_eq!(PointShapesConfig::default().num_points, 1024);
/// let config = PointShapesConfig { num_points: 64, ..PointShapesConfig::split(Split::Test, 20) };
/// let clouds = PointShapes::new(config.clone())?;
/// assert_eq!((clouds.len(), clouds.num_classes()), (20, 10));
/// // A cloud of 64 xyz points, which are also its positions, inside the unit sphere.
/// let cloud = clouds.get(12)?;
/// assert_eq!((cloud.tokens(), cloud.channels, cloud.label), (64, 3, 2));
/// assert_eq!(cloud.positions.as_ref(), Some(&cloud.values));
/// assert!(cloud.values.chunks(3).all(|p| p.iter().map(|x| x * x).sum::<f32>() <= 1.0 + 1e-5));
/// assert!(PointShapes::new(PointShapesConfig { num_points: 0, ..config }).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PointShapesConfig {
    /// Number of samples.
    pub len: usize,
    /// Points per cloud.
    pub num_points: usize,
    /// Standard deviation of the per-point noise (before normalisation, shapes have radius ~1).
    pub noise: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for PointShapesConfig {
    fn default() -> Self {
        PointShapesConfig {
            len: 5_000,
            num_points: 1024,
            noise: 0.01,
            seed: 0,
        }
    }
}

impl PointShapesConfig {
    /// The default configuration for a split (train and test use different seeds).
    pub fn split(split: Split, len: usize) -> Self {
        PointShapesConfig {
            len,
            seed: match split {
                Split::Train => 0x9017,
                Split::Test => 0x7E57,
            },
            ..PointShapesConfig::default()
        }
    }
}

/// Builds a mesh from a parametric grid `f(u, v)` over `[0,1]^2` with `nu x nv` cells.
fn grid_mesh(mesh: &mut Mesh, nu: usize, nv: usize, f: impl Fn(f32, f32) -> [f32; 3]) {
    let base = mesh.vertices.len() as u32;
    for i in 0..=nu {
        for j in 0..=nv {
            mesh.vertices
                .push(f(i as f32 / nu as f32, j as f32 / nv as f32));
        }
    }
    let w = (nv + 1) as u32;
    for i in 0..nu as u32 {
        for j in 0..nv as u32 {
            let a = base + i * w + j;
            mesh.triangles.push([a, a + w, a + w + 1]);
            mesh.triangles.push([a, a + w + 1, a + 1]);
        }
    }
}

fn polyhedron(verts: &[[f32; 3]], faces: &[&[u32]]) -> Mesh {
    let mut m = Mesh {
        vertices: verts.to_vec(),
        triangles: Vec::new(),
    };
    for f in faces {
        m.push_polygon(f);
    }
    m
}

/// The mesh of class `class` (radius about 1, up axis z).
pub fn shape_mesh(class: usize) -> Mesh {
    let mut m = Mesh::default();
    let sphere = |u: f32, v: f32, r: f32, zoff: f32, th0: f32, th1: f32| {
        let th = th0 + (th1 - th0) * u;
        let ph = 2.0 * PI * v;
        [
            r * th.sin() * ph.cos(),
            r * th.sin() * ph.sin(),
            r * th.cos() + zoff,
        ]
    };
    let disk = |m: &mut Mesh, z: f32, r: f32| {
        grid_mesh(m, 4, 32, |u, v| {
            let ph = 2.0 * PI * v;
            [r * u * ph.cos(), r * u * ph.sin(), z]
        })
    };
    match class {
        0 => grid_mesh(&mut m, 24, 48, |u, v| sphere(u, v, 1.0, 0.0, 0.0, PI)),
        1 => {
            return polyhedron(
                &[
                    [-1., -1., -1.],
                    [1., -1., -1.],
                    [1., 1., -1.],
                    [-1., 1., -1.],
                    [-1., -1., 1.],
                    [1., -1., 1.],
                    [1., 1., 1.],
                    [-1., 1., 1.],
                ],
                &[
                    &[0, 3, 2, 1],
                    &[4, 5, 6, 7],
                    &[0, 1, 5, 4],
                    &[2, 3, 7, 6],
                    &[1, 2, 6, 5],
                    &[0, 4, 7, 3],
                ],
            )
        }
        2 => {
            grid_mesh(&mut m, 8, 48, |u, v| {
                let ph = 2.0 * PI * v;
                [0.7 * ph.cos(), 0.7 * ph.sin(), -1.0 + 2.0 * u]
            });
            disk(&mut m, -1.0, 0.7);
            disk(&mut m, 1.0, 0.7);
        }
        3 => {
            grid_mesh(&mut m, 8, 48, |u, v| {
                let ph = 2.0 * PI * v;
                [u * ph.cos(), u * ph.sin(), 1.0 - 2.0 * u]
            });
            disk(&mut m, -1.0, 1.0);
        }
        4 => grid_mesh(&mut m, 48, 24, |u, v| {
            let (a, b) = (2.0 * PI * u, 2.0 * PI * v);
            let r = 0.7 + 0.3 * b.cos();
            [r * a.cos(), r * a.sin(), 0.3 * b.sin()]
        }),
        5 => {
            return polyhedron(
                &[
                    [-1., -1., -0.7],
                    [1., -1., -0.7],
                    [1., 1., -0.7],
                    [-1., 1., -0.7],
                    [0., 0., 1.0],
                ],
                &[
                    &[0, 3, 2, 1],
                    &[0, 1, 4],
                    &[1, 2, 4],
                    &[2, 3, 4],
                    &[3, 0, 4],
                ],
            )
        }
        6 => {
            return polyhedron(
                &[[1., 1., 1.], [1., -1., -1.], [-1., 1., -1.], [-1., -1., 1.]],
                &[&[0, 1, 2], &[0, 3, 1], &[0, 2, 3], &[1, 3, 2]],
            )
        }
        7 => {
            return polyhedron(
                &[
                    [1., 0., 0.],
                    [-1., 0., 0.],
                    [0., 1., 0.],
                    [0., -1., 0.],
                    [0., 0., 1.],
                    [0., 0., -1.],
                ],
                &[
                    &[0, 2, 4],
                    &[2, 1, 4],
                    &[1, 3, 4],
                    &[3, 0, 4],
                    &[2, 0, 5],
                    &[1, 2, 5],
                    &[3, 1, 5],
                    &[0, 3, 5],
                ],
            )
        }
        8 => {
            let r = 0.45;
            grid_mesh(&mut m, 8, 48, |u, v| {
                let ph = 2.0 * PI * v;
                [r * ph.cos(), r * ph.sin(), -0.55 + 1.1 * u]
            });
            grid_mesh(&mut m, 12, 48, |u, v| sphere(u, v, r, 0.55, 0.0, PI / 2.0));
            grid_mesh(&mut m, 12, 48, |u, v| sphere(u, v, r, -0.55, PI / 2.0, PI));
        }
        _ => {
            grid_mesh(&mut m, 12, 48, |u, v| sphere(u, v, 1.0, 0.0, 0.0, PI / 2.0));
            disk(&mut m, 0.0, 1.0);
        }
    }
    m
}

/// Procedural point clouds of [`POINT_SHAPE_CLASSES`].
#[derive(Clone, Debug)]
pub struct PointShapes {
    cfg: PointShapesConfig,
    meshes: Vec<Mesh>,
}

fn random_rotation(rng: &mut Rng) -> [[f32; 3]; 3] {
    // Uniform random unit quaternion.
    let mut q = [rng.normal(), rng.normal(), rng.normal(), rng.normal()];
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    q.iter_mut().for_each(|v| *v /= n);
    let [w, x, y, z] = q;
    [
        [
            1. - 2. * (y * y + z * z),
            2. * (x * y - w * z),
            2. * (x * z + w * y),
        ],
        [
            2. * (x * y + w * z),
            1. - 2. * (x * x + z * z),
            2. * (y * z - w * x),
        ],
        [
            2. * (x * z - w * y),
            2. * (y * z + w * x),
            1. - 2. * (x * x + y * y),
        ],
    ]
}

impl PointShapes {
    /// Builds the class meshes.
    pub fn new(cfg: PointShapesConfig) -> Result<Self> {
        super::check_num_points(cfg.num_points)?;
        let meshes = (0..POINT_SHAPE_CLASSES.len()).map(shape_mesh).collect();
        Ok(PointShapes { cfg, meshes })
    }

    /// The configuration.
    pub fn config(&self) -> &PointShapesConfig {
        &self.cfg
    }

    /// Sample of class `label`: points on the class mesh, randomly rotated, scaled, shifted
    /// and jittered with the draws of `rng`, normalised into the unit sphere.
    fn draw(&self, label: usize, rng: &mut Rng) -> Result<Sample> {
        let mut pts = sample_surface(&self.meshes[label], self.cfg.num_points, rng)?;
        let rot = random_rotation(rng);
        let scale = [0, 1, 2].map(|_| 0.85 + 0.3 * rng.uniform());
        let shift = [0, 1, 2].map(|_| rng.uniform() - 0.5);
        for p in pts.iter_mut() {
            let s = [p[0] * scale[0], p[1] * scale[1], p[2] * scale[2]];
            for d in 0..3 {
                p[d] = rot[d][0] * s[0]
                    + rot[d][1] * s[1]
                    + rot[d][2] * s[2]
                    + shift[d]
                    + self.cfg.noise * rng.normal();
            }
        }
        normalize_points(&mut pts, Scaling::UnitSphere);
        Ok(Sample::points(pts.into_iter().flatten().collect(), label))
    }
}

generated_dataset!(PointShapes, POINT_SHAPE_CLASSES, PointShapes::draw);
