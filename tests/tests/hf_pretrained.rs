//! The Hugging Face material in `<golden dir>/hf-pretrained/`: the image processor's output
//! for real photos (`processor-*.safetensors`), reproduced by ours.

use perceiver_data::image::ImageProcessor;
use perceiver_nn::io::load_safetensors;
use perceiver_tests::{golden_dir, skip_or_fail};
use std::path::PathBuf;

/// The files of `hf-pretrained/` whose names start with `prefix`, sorted (none: skipped, or a
/// failure under CI).
fn material(test: &str, prefix: &str) -> Vec<PathBuf> {
    let dir = golden_dir().join("hf-pretrained");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        skip_or_fail(test, &format!("no {prefix}* in {}", dir.display()));
    }
    found
}

/// Our processor on each fixture's photo (named by its `image` metadata, with the settings
/// of its `settings` metadata) gives the reference `pixel_values` within 0.05 (max) and 0.01
/// (mean) absolute, in normalised units.
#[test]
fn image_processor_matches_the_reference() {
    for path in material("image_processor_matches_the_reference", "processor-") {
        let (tensors, meta) = load_safetensors(&path).unwrap();
        let expected = &tensors.iter().find(|(n, _)| n == "pixel_values").unwrap().1;
        let image = path.with_file_name(&meta["image"]);
        let p = ImageProcessor::from_json(&meta["settings"], &path).unwrap();
        let (ours, h, w) = p.process_file(&image).unwrap();
        let [_, c, eh, ew] = expected.shape() else {
            panic!("{}: pixel_values is not [1, 3, H, W]", path.display())
        };
        assert_eq!((h, w, 3), (*eh, *ew, *c), "{}", path.display());
        let want = expected.to_vec();
        let (mut max, mut sum) = (0.0f32, 0.0f64);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let d = (ours[(y * w + x) * 3 + ch] - want[(ch * h + y) * w + x]).abs();
                    max = max.max(d);
                    sum += d as f64;
                }
            }
        }
        let mean = sum / (h * w * 3) as f64;
        println!("{}: max {max:.2e}, mean {mean:.2e}", path.display());
        assert!(
            max <= 0.05 && mean <= 0.01,
            "{}: max {max}, mean {mean}",
            path.display()
        );
    }
}
