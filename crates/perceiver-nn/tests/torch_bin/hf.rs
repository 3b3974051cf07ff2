//! The real Hugging Face checkpoint (`hf-pretrained/hf-dir-fourier` of the golden material).

use super::{decode_err, values};
use perceiver_nn::io::load_pytorch_bin;
use std::io::Cursor;
use std::path::PathBuf;

/// `$PERCEIVER_GOLDEN_DIR`, else `<workspace>/../shared/golden`.
fn golden_dir() -> PathBuf {
    match std::env::var_os("PERCEIVER_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden"),
    }
}

/// The real checkpoint's folder, or `None` (a skip, a failure under `CI=true`) when absent.
fn hf_fourier_dir(test: &str) -> Option<PathBuf> {
    let dir = golden_dir().join("hf-pretrained/hf-dir-fourier");
    if dir.join("pytorch_model.bin").is_file() {
        return Some(dir);
    }
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"));
    assert!(!ci, "{test}: {} is missing (CI=true)", dir.display());
    eprintln!(
        "{test}: skipped, {} is missing (set PERCEIVER_GOLDEN_DIR)",
        dir.display()
    );
    None
}

#[test]
fn the_hugging_face_checkpoint_loads_with_shapes_from_its_config() {
    let Some(dir) = hf_fourier_dir("hf checkpoint") else {
        return;
    };
    let path = dir.join("pytorch_model.bin");
    let tensors = load_pytorch_bin(&path).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let get = |k: &str| config[k].as_u64().unwrap() as usize;
    let (num_latents, d_latents, d_model) = (get("num_latents"), get("d_latents"), get("d_model"));
    let blocks = get("num_self_attends_per_block");
    let labels = config["id2label"].as_object().unwrap().len();

    let shape = |name: &str| -> Vec<usize> {
        let (_, t) = tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"));
        t.shape().to_vec()
    };
    assert!(tensors.iter().all(|(n, _)| n.starts_with("perceiver.")));
    assert_eq!(tensors[0].0, "perceiver.embeddings.latents");
    assert_eq!(
        shape("perceiver.embeddings.latents"),
        [num_latents, d_latents]
    );
    let cross = "perceiver.encoder.cross_attention.attention";
    assert_eq!(
        shape(&format!("{cross}.self.layernorm1.weight")),
        [d_latents]
    );
    assert_eq!(shape(&format!("{cross}.self.layernorm2.weight")), [d_model]);
    assert_eq!(
        shape(&format!("{cross}.self.key.weight")),
        [d_model, d_model]
    );
    assert_eq!(shape(&format!("{cross}.output.dense.weight"))[0], d_latents);
    for i in 0..blocks {
        let q = format!("perceiver.encoder.self_attends.{i}.attention.self.query.weight");
        assert_eq!(shape(&q), [d_latents, d_latents]);
    }
    let beyond = format!("perceiver.encoder.self_attends.{blocks}.");
    assert!(!tensors.iter().any(|(n, _)| n.starts_with(&beyond)));
    assert_eq!(
        shape("perceiver.decoder.decoder.final_layer.weight"),
        [labels, d_latents]
    );
    assert_eq!(
        shape("perceiver.decoder.decoder.final_layer.bias"),
        [labels]
    );
    let names: std::collections::HashSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), tensors.len(), "duplicate names");

    // The values are the storages' bytes: compare the latents with entry data/0 read directly.
    let bytes = std::fs::read(&path).unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name("pytorch_model/data/0").unwrap(), &mut raw)
        .unwrap();
    let want: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values(&tensors[0].1), want);
    assert!(tensors
        .iter()
        .all(|(_, t)| t.contiguous_data().iter().all(|x| x.is_finite())));

    // Cut every 97 bytes: always an error, never a panic.
    for cut in (0..bytes.len()).step_by(97) {
        decode_err(&bytes[..cut]);
    }
}
