//! safetensors reading and writing: round trips, metadata, corrupt and truncated files, wrong
//! dtypes, parameter stores, compatibility with the `safetensors` crate. (That the golden
//! fixtures read, and read as the `safetensors` crate reads them, is checked in the workspace
//! tests, `tests/tests/golden.rs`, which locate the shared material.)

use perceiver_nn::io::{
    decode_safetensors, load_params, load_safetensors, save_params, save_safetensors,
};
use perceiver_nn::ParamStore;
use perceiver_tensor::{Error, Result, Rng, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("io-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample() -> Vec<(String, Tensor)> {
    let mut rng = Rng::new(1);
    vec![
        (
            "layers.0.weight".to_string(),
            Tensor::randn(&[3, 4], &mut rng),
        ),
        (
            "bias".to_string(),
            Tensor::from_vec(vec![1.5, -2.25, f32::MIN_POSITIVE], &[3]).unwrap(),
        ),
        ("scalar".to_string(), Tensor::scalar(7.0)),
        ("empty".to_string(), Tensor::zeros(&[2, 0])),
        // A strided view is written as its logical (row-major) elements.
        (
            "transposed".to_string(),
            Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])
                .unwrap()
                .t()
                .unwrap(),
        ),
    ]
}

fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    let mut a: Vec<_> = a
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec()))
        .collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    let b: Vec<_> = b
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec()))
        .collect();
    assert_eq!(a, b);
}

fn format_msg(e: Error) -> (String, String) {
    match e {
        Error::Format { path, msg } => (path, msg),
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

#[test]
fn round_trip_with_metadata() -> Result<()> {
    let dir = tmp_dir("round-trip");
    let path = dir.join("model.safetensors");
    let tensors = sample();
    let meta = HashMap::from([
        (
            "config".to_string(),
            r#"{"depth": 3, "name": "é \"quoted\""}"#.to_string(),
        ),
        ("epoch".to_string(), "12".to_string()),
    ]);
    save_safetensors(&path, &tensors, Some(meta.clone()))?;
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary file is renamed away");
    let (loaded, loaded_meta) = load_safetensors(&path)?;
    assert_same(&tensors, &loaded);
    assert_eq!(loaded_meta, meta);
    let names: Vec<&str> = loaded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["bias", "empty", "layers.0.weight", "scalar", "transposed"],
        "name order"
    );
    assert_eq!(loaded[4].1.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);

    // Without metadata: an empty map. Overwriting replaces the file.
    save_safetensors(&path, &tensors[..2], None)?;
    let (loaded, loaded_meta) = load_safetensors(&path)?;
    assert!(loaded_meta.is_empty());
    assert_same(&tensors[..2], &loaded);

    // Equal inputs give identical bytes.
    let other = dir.join("again.safetensors");
    save_safetensors(&other, &tensors[..2], None)?;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&other).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn files_are_compatible_with_the_safetensors_crate() -> Result<()> {
    let dir = tmp_dir("compat");
    // Ours -> the crate.
    let path = dir.join("ours.safetensors");
    let tensors = sample();
    save_safetensors(
        &path,
        &tensors,
        Some(HashMap::from([("k".to_string(), "v".to_string())])),
    )?;
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).expect("the safetensors crate reads our file");
    assert_eq!(st.len(), tensors.len());
    for (name, t) in &tensors {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), t.shape());
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, t.to_vec(), "{name}");
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["k"], "v");

    // The crate -> ours.
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap();
    let theirs = dir.join("theirs.safetensors");
    safetensors::serialize_to_file(
        [("m", view)],
        Some(HashMap::from([("a".to_string(), "b".to_string())])),
        &theirs,
    )
    .unwrap();
    let (loaded, meta) = load_safetensors(&theirs)?;
    assert_eq!(loaded[0].0, "m");
    assert_eq!(loaded[0].1.to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(meta["a"], "b");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn truncated_file_is_a_format_error_naming_file_and_tensor() -> Result<()> {
    let dir = tmp_dir("truncated");
    let path = dir.join("cut.safetensors");
    let tensors = vec![
        ("a".to_string(), Tensor::ones(&[4])),
        ("b".to_string(), Tensor::ones(&[8])),
    ];
    save_safetensors(&path, &tensors, None)?;
    let full = std::fs::read(&path).unwrap();

    // Cut inside the data of `b` (the second tensor).
    std::fs::write(&path, &full[..full.len() - 5]).unwrap();
    let (p, msg) = format_msg(load_safetensors(&path).unwrap_err());
    assert!(p.ends_with("cut.safetensors"), "{p}");
    assert!(msg.contains("`b`") && msg.contains("truncated"), "{msg}");

    // Cut inside the header, and shorter than the length prefix.
    std::fs::write(&path, &full[..20]).unwrap();
    let (_, msg) = format_msg(load_safetensors(&path).unwrap_err());
    assert!(msg.contains("truncated"), "{msg}");
    std::fs::write(&path, &full[..3]).unwrap();
    let (_, msg) = format_msg(load_safetensors(&path).unwrap_err());
    assert!(msg.contains("8-byte"), "{msg}");

    // Extra bytes at the end.
    let mut long = full.clone();
    long.extend_from_slice(&[0; 4]);
    std::fs::write(&path, &long).unwrap();
    let (_, msg) = format_msg(load_safetensors(&path).unwrap_err());
    assert!(msg.contains("4 bytes after"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn corrupt_headers_are_format_errors() {
    let with_header = |h: &str, data: usize| {
        let mut h = h.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h);
        b.extend(vec![0u8; data]);
        b
    };
    let cases = [
        (with_header("{not json", 0), "JSON"),
        (
            with_header(
                r#"{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}"#,
                12,
            ),
            "`x`",
        ),
        (
            with_header(
                r#"{"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#,
                8,
            ),
            "`x`",
        ),
        (
            with_header(r#"{"x": {"shape": [2], "data_offsets": [0, 8]}}"#, 8),
            "dtype",
        ),
        (
            with_header(
                r#"{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "y": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#,
                12,
            ),
            "gap",
        ),
        (with_header(r#"{"__metadata__": {"k": 3}}"#, 0), "`k`"),
        ((u64::MAX).to_le_bytes().to_vec(), "exceeds"),
        (
            with_header(
                r#"{"x": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}}"#,
                8,
            ),
            "overflow",
        ),
    ];
    for (bytes, needle) in cases {
        let (path, msg) = format_msg(decode_safetensors(&bytes, "mem.safetensors").unwrap_err());
        assert_eq!(path, "mem.safetensors");
        assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
    }
}

#[test]
fn float_dtypes_convert_and_others_are_a_format_error_naming_the_tensor() {
    let dir = tmp_dir("dtype");
    let path = dir.join("mixed.safetensors");
    let f32s: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64s: Vec<u8> = [1.5f64, -2.0, 3.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // 1.0, -2.0, 2^-24 (the smallest subnormal), as f16 and bf16 bits.
    let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0x0001]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = [0x3f80u16, 0xc000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let ints: Vec<u8> = [7i32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = |d, n, b| safetensors::tensor::TensorView::new(d, vec![n], b).unwrap();
    let floats = [
        ("a", view(Dtype::F32, 2, &f32s)),
        ("b", view(Dtype::F64, 3, &f64s)),
        ("c", view(Dtype::F16, 3, &f16s)),
        ("d", view(Dtype::BF16, 2, &bf16s)),
    ];
    safetensors::serialize_to_file(floats, None, &path).unwrap();
    let (t, _) = load_safetensors(&path).unwrap();
    assert_eq!(t[0].1.to_vec(), [1.0, 2.0]);
    assert_eq!(t[1].1.to_vec(), [1.5, -2.0, 3.25]);
    assert_eq!(t[2].1.to_vec(), [1.0, -2.0, 2f32.powi(-24)]);
    assert_eq!(t[3].1.to_vec(), [1.0, -2.0]);

    let path = dir.join("int.safetensors");
    let views = [
        ("fine", view(Dtype::F32, 2, &f32s)),
        ("count", view(Dtype::I32, 1, &ints)),
    ];
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let (p, msg) = format_msg(load_safetensors(&path).unwrap_err());
    assert!(p.ends_with("int.safetensors"), "{p}");
    assert!(msg.contains("`count`") && msg.contains("I32"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn io_errors_name_the_path() {
    let dir = tmp_dir("io-errors");
    let missing = dir.join("does-not-exist.safetensors");
    match load_safetensors(&missing) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("does-not-exist.safetensors")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    let no_dir = dir.join("no-such-dir").join("x.safetensors");
    match save_safetensors(&no_dir, &sample(), None) {
        Err(Error::Io { path, .. }) => assert!(path.contains("no-such-dir"), "{path}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    // Bad names are rejected before anything is written.
    let path = dir.join("dup.safetensors");
    let t = Tensor::ones(&[1]);
    let dup = vec![("a".to_string(), t.clone()), ("a".to_string(), t.clone())];
    assert!(matches!(
        save_safetensors(&path, &dup, None),
        Err(Error::InvalidArgument { .. })
    ));
    let reserved = vec![("__metadata__".to_string(), t)];
    assert!(save_safetensors(&path, &reserved, None).is_err());
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).ok();
}

fn model(seed: u64) -> ParamStore {
    let mut rng = Rng::new(seed);
    let mut s = ParamStore::new();
    s.add("encoder.weight", Tensor::randn(&[4, 3], &mut rng))
        .unwrap();
    s.add("encoder.bias", Tensor::randn(&[3], &mut rng))
        .unwrap();
    s.add("latents", Tensor::randn(&[2, 3], &mut rng)).unwrap();
    s
}

#[test]
fn params_round_trip_and_mismatch_report() -> Result<()> {
    let dir = tmp_dir("params");
    let path = dir.join("params.safetensors");
    let a = model(1);
    save_params(
        &path,
        &a,
        Some(HashMap::from([("step".to_string(), "10".to_string())])),
    )?;
    let b = model(2);
    load_params(&path, &b)?;
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x.value().to_vec(), y.value().to_vec());
    }
    assert_eq!(load_safetensors(&path)?.1["step"], "10");

    // A store with a missing, an unexpected and a mis-shaped tensor: all three are listed and
    // nothing is loaded.
    let mut rng = Rng::new(3);
    let mut c = ParamStore::new();
    c.add("encoder.weight", Tensor::randn(&[4, 3], &mut rng))?;
    c.add("encoder.bias", Tensor::randn(&[5], &mut rng))?;
    c.add("decoder.query", Tensor::randn(&[1, 3], &mut rng))?;
    let before = c.get("encoder.weight").unwrap().value().to_vec();
    let (p, msg) = format_msg(load_params(&path, &c).unwrap_err());
    assert!(p.ends_with("params.safetensors"));
    assert!(
        msg.contains("missing from the file: `decoder.query` [1, 3]"),
        "{msg}"
    );
    assert!(
        msg.contains("not parameters of the model: `latents` [2, 3]"),
        "{msg}"
    );
    assert!(
        msg.contains("`encoder.bias` is [3] in the file, [5] in the model"),
        "{msg}"
    );
    assert_eq!(
        c.get("encoder.weight").unwrap().value().to_vec(),
        before,
        "nothing loaded"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
