//! The Hugging Face material in `<golden dir>/hf-pretrained/`: the image processor's output
//! for real photos (`processor-*.safetensors`), reproduced by ours.

use perceiver_data::image::ImageProcessor;
use perceiver_nn::io::load_safetensors;
use perceiver_tests::hf_pretrained as material;

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

/// Relative difference `max |a - b| / max |b|`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    d / b.iter().map(|x| x.abs()).fold(f32::MIN_POSITIVE, f32::max)
}

fn argmax(xs: &[f32]) -> usize {
    (0..xs.len()).fold(0, |best, i| if xs[i] > xs[best] { i } else { best })
}

/// Every `hf-dir-*` directory loads as a user's download would (config.json,
/// preprocessor_config.json, pytorch_model.bin or model.safetensors); the model on the expected
/// `pixel_values` gives the expected `logits` within 1e-4 relative; our processing of
/// `image.png` gives `pixel_values` within the processor tolerance and the same top-1 class.
#[test]
fn hf_directories_load_and_predict() {
    use perceiver_model::import::hf::{channels_last, is_hf_directory, load_hf_directory};
    for dir in material("hf_directories_load_and_predict", "hf-dir-") {
        assert!(is_hf_directory(&dir), "{}", dir.display());
        let hf = load_hf_directory(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (tensors, _) = load_safetensors(dir.join("expected.safetensors")).unwrap();
        let get = |n: &str| tensors.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let (pixels, logits) = (get("pixel_values"), get("logits"));
        let x = channels_last(&pixels).unwrap();
        let ours = hf.model.forward(&x, None).unwrap().logits.to_vec();
        let want = logits.to_vec();
        let r = rel(&ours, &want);
        println!("{}: logits relative difference {r:.2e}", dir.display());
        assert!(r <= 1e-4, "{}: logits differ by {r}", dir.display());
        assert_eq!(hf.labels.len(), want.len());
        // Our preprocessing of the photo.
        let text = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
        let p = ImageProcessor::from_json(&text, &dir.join("preprocessor_config.json")).unwrap();
        let (ours_px, h, w) = p.process_file(&dir.join("image.png")).unwrap();
        let want_px = x.contiguous().to_vec();
        assert_eq!(ours_px.len(), want_px.len(), "{}: {h} x {w}", dir.display());
        let max = ours_px
            .iter()
            .zip(&want_px)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max <= 0.05,
            "{}: pixel values differ by {max}",
            dir.display()
        );
        let x_ours = perceiver_tensor::Tensor::from_vec(ours_px, &[1, h, w, 3]).unwrap();
        let top = argmax(&hf.model.forward(&x_ours, None).unwrap().logits.to_vec());
        assert_eq!(top, argmax(&want), "{}: top-1 differs", dir.display());
    }
}

/// A converted directory fine-tunes from exactly its weights: our checkpoint of the loaded
/// model, opened by `init_model_from` for the same classes, gives the same logits before any
/// training step.
#[test]
fn converted_weights_are_the_ones_fine_tuned() {
    use perceiver_model::import::hf::{channels_last, load_hf_directory};
    for dir in material("converted_weights_are_the_ones_fine_tuned", "hf-dir-") {
        let hf = load_hf_directory(&dir).unwrap();
        let out = std::env::temp_dir().join(format!("hf-converted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        hf.model.save_checkpoint(&out).unwrap();
        let c = hf.model.config();
        let shape = perceiver_tasks::DataShape {
            axes: c.input_axes.clone(),
            channels: c.input_channels,
            tokens: c.input_axes.iter().product(),
            grid: Some(c.input_axes.clone()),
            sample_tokens: c.input_axes.iter().product(),
        };
        let (model, fresh) =
            perceiver_tasks::init_model_from(&out, &shape, hf.labels.len(), 0).unwrap();
        assert!(fresh.is_empty(), "{fresh:?}");
        let (tensors, _) = load_safetensors(dir.join("expected.safetensors")).unwrap();
        let px = &tensors.iter().find(|(n, _)| n == "pixel_values").unwrap().1;
        let x = channels_last(px).unwrap();
        let a = hf.model.forward(&x, None).unwrap().logits.to_vec();
        let b = model.forward(&x, None).unwrap().logits.to_vec();
        assert_eq!(a, b, "{}", dir.display());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
