//! `perceiver predict` and `info` on Hugging Face checkpoint directories
//! (`<golden dir>/hf-pretrained/hf-dir-*`, as a user downloads them).

mod common;

use common::*;
use std::path::PathBuf;

/// The `hf-dir-*` directories beside the golden fixtures (none: a skip, or a failure under
/// `CI=true`).
fn hf_dirs() -> Vec<PathBuf> {
    perceiver_tests::hf_pretrained("hf_dirs", "hf-dir-")
}

fn argmax(xs: &[f32]) -> usize {
    (0..xs.len()).fold(0, |best, i| if xs[i] > xs[best] { i } else { best })
}

#[test]
fn predict_names_the_expected_top_class() {
    for dir in hf_dirs() {
        let (tensors, _) =
            perceiver_nn::io::load_safetensors(dir.join("expected.safetensors")).unwrap();
        let logits = &tensors.iter().find(|(n, _)| n == "logits").unwrap().1;
        let want = argmax(&logits.to_vec());
        let image = dir.join("image.png");
        let o = run(&[
            "predict",
            "--json",
            "--checkpoint",
            dir.to_str().unwrap(),
            image.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let j = last_json(&o);
        assert_eq!(j["file"], image.display().to_string());
        let top = j["top"].as_array().unwrap();
        assert_eq!(top[0]["index"], want, "{j}");
        assert!(top[0]["label"].is_string());
        let sum: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
        assert!(sum > 0.0 && sum <= 1.0 + 1e-5);
        let o = run(&["info", "--checkpoint", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("parameters:"));
    }
}

/// A truncated `pytorch_model.bin` is refused with one line naming it, never a panic.
#[test]
fn a_truncated_checkpoint_is_refused() {
    for dir in hf_dirs() {
        let bin = dir.join("pytorch_model.bin");
        let Ok(bytes) = std::fs::read(&bin) else {
            continue;
        };
        let d = tmp("hf-truncated");
        let copy = d.join("model");
        std::fs::create_dir(&copy).unwrap();
        for f in ["config.json", "preprocessor_config.json"] {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
        let image = dir.join("image.png");
        for cut in [bytes.len() / 3, bytes.len() - 100] {
            std::fs::write(copy.join("pytorch_model.bin"), &bytes[..cut]).unwrap();
            let e = refused(&[
                "predict",
                "--checkpoint",
                copy.to_str().unwrap(),
                image.to_str().unwrap(),
            ]);
            assert!(e.contains("pytorch_model.bin"), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// `convert` writes our checkpoint format (refusing a non-empty folder), and `train
/// --init-from` fine-tunes it on a small image folder with a new head for its class count.
#[test]
fn convert_then_fine_tune_on_an_image_folder() {
    for dir in hf_dirs() {
        let d = tmp("hf-convert");
        let out = d.join("converted");
        let j = last_json(&run(&[
            "convert",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ]));
        assert_eq!(j["command"], "convert", "{j}");
        assert!(out.join("model.safetensors").is_file() && out.join("config.json").is_file());
        let e = refused(&["convert", dir.to_str().unwrap(), out.to_str().unwrap()]);
        assert!(e.contains("not empty"), "{e}");
        // A folder of 16 x 16 RGB images in 2 classes (the checkpoint has more).
        let data = d.join("data");
        for (split, n) in [("train", 8u32), ("test", 4)] {
            for (k, class) in ["dots", "stripes"].iter().enumerate() {
                let cdir = data.join(split).join(class);
                std::fs::create_dir_all(&cdir).unwrap();
                for i in 0..n {
                    let img = image::RgbImage::from_fn(16, 16, |x, y| {
                        let v = if k == 0 { (x * y + i) % 7 } else { (x + i) % 3 };
                        image::Rgb([(v * 40) as u8, (v * 20) as u8, 100])
                    });
                    img.save(cdir.join(format!("{i}.png"))).unwrap();
                }
            }
        }
        let run_dir = d.join("run");
        let o = run(&[
            "train",
            "--dataset",
            "image-folder",
            "--data-dir",
            data.to_str().unwrap(),
            "--image-size",
            "16",
            "--init-from",
            out.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--out",
            run_dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("initialised afresh for 2 classes"),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(last_json(&o)["epochs"], 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
