//! A ModelNet-style folder: `root/<class>/{train,test}/*.off` (or `.ply`), classes sorted by
//! name. Each `get` reads the mesh, samples `num_points` points by area with a generator seeded
//! from `(seed, index)` (so a sample is always the same) and normalises the cloud. Sampled
//! clouds can be cached in memory.

use super::read::read_mesh;
use super::sampling::{normalize_points, sample_surface, Scaling};
use crate::dataset::{check_index, mix_seed, Dataset, Split};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// ModelNet options.
///
/// ```
/// use perceiver_data::points::{ModelNet, ModelNetConfig, Scaling};
/// use perceiver_data::{DataError, Split};
/// let config = ModelNetConfig::new(Split::Test);
/// assert_eq!(config.scaling, Scaling::UnitSphere);
/// assert_eq!((config.num_points, config.seed, config.cache), (2048, 0, true));
/// // An empty cloud is refused before the folder is read.
/// let empty = ModelNetConfig { num_points: 0, ..config };
/// let err = ModelNet::open(std::path::Path::new("no-such-folder"), empty).unwrap_err();
/// assert!(matches!(err, DataError::Invalid(_)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelNetConfig {
    /// Which split folder to read.
    pub split: Split,
    /// Points per cloud.
    pub num_points: usize,
    /// Normalisation of each cloud.
    pub scaling: Scaling,
    /// Seed of the surface sampling.
    pub seed: u64,
    /// Keep sampled clouds in memory after the first read.
    pub cache: bool,
}

impl ModelNetConfig {
    /// 2,048 points per cloud, unit sphere, cached.
    pub fn new(split: Split) -> Self {
        ModelNetConfig {
            split,
            num_points: 2048,
            scaling: Scaling::UnitSphere,
            seed: 0,
            cache: true,
        }
    }
}

/// A ModelNet-style mesh folder.
#[derive(Debug)]
pub struct ModelNet {
    items: Vec<(PathBuf, usize)>,
    classes: Vec<String>,
    cfg: ModelNetConfig,
    cache: Vec<OnceLock<Arc<Vec<f32>>>>,
}

impl ModelNet {
    /// Scans `root` for `<class>/<split>/*.{off,ply}`.
    pub fn open(root: &Path, cfg: ModelNetConfig) -> Result<ModelNet> {
        super::check_num_points(cfg.num_points)?;
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for (name, dir) in crate::io::class_dirs(root)? {
            let label = classes.len();
            classes.push(name);
            let sub = dir.join(cfg.split.name());
            if !sub.is_dir() {
                continue;
            }
            for f in crate::io::sorted_dir(&sub)? {
                let ext = f
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase());
                if f.is_file() && matches!(ext.as_deref(), Some("off" | "ply")) {
                    items.push((f, label));
                }
            }
        }
        if classes.is_empty() {
            return Err(DataError::missing(root, "no class folders"));
        }
        let cache = (0..items.len()).map(|_| OnceLock::new()).collect();
        Ok(ModelNet {
            items,
            classes,
            cfg,
            cache,
        })
    }

    /// The mesh files and their labels.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.items
    }

    fn load(&self, index: usize) -> Result<Vec<f32>> {
        let (path, _) = &self.items[index];
        let mesh = read_mesh(path)?;
        let mut rng = Rng::new(mix_seed(&[self.cfg.seed, index as u64]));
        let mut pts = sample_surface(&mesh, self.cfg.num_points, &mut rng)
            .map_err(|e| DataError::decode(path, e.to_string()))?;
        normalize_points(&mut pts, self.cfg.scaling);
        Ok(pts.into_iter().flatten().collect())
    }
}

impl Dataset for ModelNet {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.len())?;
        let label = self.items[index].1;
        let xyz = if self.cfg.cache {
            match self.cache[index].get() {
                Some(v) => v.as_ref().clone(),
                None => {
                    let v = Arc::new(self.load(index)?);
                    let _ = self.cache[index].set(v.clone());
                    v.as_ref().clone()
                }
            }
        } else {
            self.load(index)?
        };
        Ok(Sample::points(xyz, label))
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }
}
