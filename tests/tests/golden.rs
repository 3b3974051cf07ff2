//! Golden test: the Rust Perceiver against the PyTorch references' own numbers.
//!
//! For every `*.safetensors` in `../shared/golden` (or in `$PERCEIVER_GOLDEN_DIR`), dispatch on
//! the metadata `reference` key (lucidrains `perceiver-pytorch` or Hugging Face
//! `transformers`), build the model from the metadata config, import the `param.*` state dict,
//! run the forward on `input` (and `mask`), and compare `pos_encoding` (when present),
//! `embeddings`, `logits`, `loss` and every `grad.*` (parameters under their reference names,
//! and `grad.input` in the reference's input layout). Nothing is specific to the given files.
//!
//! Set `PERCEIVER_ATTN_KERNEL=reference` to run with the plain-ops attention instead of the
//! fused kernel. Without the fixtures the test is skipped with a message, except under
//! `CI=true`, where it fails.

use perceiver_model::import::{hf, lucidrains};
use perceiver_model::io::read_safetensors;
use perceiver_model::{import_reference, AttentionKernel, Reference};
use perceiver_tensor::Tensor;
use perceiver_tests::{in_ci, shared_dir};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Forward outputs (pos_encoding, embeddings, logits, loss): max abs error / max abs value.
const OUTPUT_TOL: f32 = 1e-5;
/// Gradients: max abs error / max abs value.
const GRAD_TOL: f32 = 1e-4;
/// A reference gradient whose largest magnitude is below this fraction of the fixture's largest
/// gradient is rounding noise around an analytically zero gradient (the key biases: softmax
/// is invariant to adding `q·b_k` to a whole row of logits). f32 cannot resolve it (its
/// epsilon is 1.2e-7), so a relative comparison is meaningless; ours must then be as small.
const ZERO_FLOOR: f32 = 1e-8;

fn golden_dir() -> PathBuf {
    match std::env::var_os("PERCEIVER_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => shared_dir().join("golden"),
    }
}

/// `max |a - b| / max |b|` (plain max abs error when `b` is all zeros).
fn rel_err(ours: &Tensor, reference: &Tensor) -> f32 {
    let (a, b) = (ours.to_vec(), reference.to_vec());
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) });
    let scale = b.iter().fold(0.0f32, |m, y| m.max(y.abs()));
    if scale > 0.0 {
        err / scale
    } else {
        err
    }
}

struct Report {
    fixture: String,
    lines: Vec<String>,
    failures: Vec<String>,
    /// Worst relative error over the forward outputs and over the gradients.
    worst: [(f32, String); 2],
}

impl Report {
    fn check(&mut self, what: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
        if ours.shape() != reference.shape() {
            let msg = format!(
                "{}: `{what}` shape {:?}, reference {:?}",
                self.fixture,
                ours.shape(),
                reference.shape()
            );
            self.lines.push(format!("  FAIL {what}: shape mismatch"));
            self.failures.push(msg);
            return;
        }
        let e = rel_err(ours, reference);
        let ok = e <= tol;
        let w = &mut self.worst[usize::from(tol == GRAD_TOL)];
        if e > w.0 || e.is_nan() {
            *w = (e, what.to_string());
        }
        self.lines.push(format!(
            "  {} {what}: max rel err {e:.2e} (tol {tol:.0e})",
            if ok { "ok  " } else { "FAIL" }
        ));
        if !ok {
            self.failures.push(format!(
                "{}: `{what}` max rel err {e:.3e} > {tol:.0e}",
                self.fixture
            ));
        }
    }

    /// A gradient check: relative, unless the reference is below `floor` (see [`ZERO_FLOOR`]),
    /// in which case ours must be below `floor` too.
    fn check_grad(&mut self, what: &str, ours: &Tensor, reference: &Tensor, floor: f32) {
        let max_abs = |t: &Tensor| t.to_vec().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if ours.shape() == reference.shape() && max_abs(reference) < floor {
            let (a, b) = (max_abs(ours), max_abs(reference));
            let ok = a < floor;
            self.lines.push(format!(
                "  {} {what}: ~0 (max |ours| {a:.1e}, max |reference| {b:.1e}, both must be < {floor:.1e})",
                if ok { "ok  " } else { "FAIL" }
            ));
            if !ok {
                self.failures.push(format!(
                    "{}: `{what}` is ~0 in the reference ({b:.2e}) but ours reaches {a:.2e}",
                    self.fixture
                ));
            }
            return;
        }
        self.check(what, ours, reference, GRAD_TOL);
    }

    fn fail(&mut self, msg: String) {
        self.lines.push(format!("  FAIL {msg}"));
        self.failures.push(format!("{}: {msg}", self.fixture));
    }
}

fn check_fixture(path: &Path, kernel: AttentionKernel) -> Report {
    let mut r = Report {
        fixture: path.file_name().unwrap().to_string_lossy().to_string(),
        lines: Vec::new(),
        failures: Vec::new(),
        worst: [(0.0, String::new()), (0.0, String::new())],
    };
    if let Err(e) = run_fixture(path, kernel, &mut r) {
        r.fail(format!("error: {e}"));
    }
    r
}

fn run_fixture(
    path: &Path,
    kernel: AttentionKernel,
    r: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let (tensors, meta) = read_safetensors(path)?;
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let get = |n: &str| -> Result<&Tensor, String> {
        by_name
            .get(n)
            .copied()
            .ok_or_else(|| format!("the fixture has no `{n}` tensor"))
    };
    let params: Vec<(String, Tensor)> = tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("param.").map(|s| (s.to_string(), t.clone())))
        .collect();
    let mut imp = import_reference(&params, &meta)?;
    imp.model.set_attention_kernel(kernel);
    let model = &imp.model;
    r.lines.push(format!(
        "  reference {:?} ({}), {} parameters, sharing {:?}",
        imp.reference,
        meta.get("reference").map(String::as_str).unwrap_or("?"),
        model.num_params(),
        model.sharing_plan()
    ));

    if imp.reference == Reference::Lucidrains {
        let tied = lucidrains::tied_from_metadata(&meta)?;
        if tied != imp.names.alias_prefixes {
            r.fail(format!(
                "tied blocks {:?} differ from the metadata's {:?}",
                imp.names.alias_prefixes, tied
            ));
        }
    }

    // The input as the reference takes it (a tracked leaf, so grad.input comes out in that
    // layout), then in our channels-last layout.
    let input = get("input")?.requires_grad();
    let x = match imp.reference {
        Reference::HuggingFace => hf::channels_last(&input)?,
        Reference::Lucidrains => input.clone(),
    };
    let mask = by_name.get("mask").copied();

    if let Some(pe) = by_name.get("pos_encoding") {
        let dims = &x.shape()[1..x.rank() - 1];
        match model.position_grid(dims)? {
            Some(ours) => r.check("pos_encoding", &ours, pe, OUTPUT_TOL),
            None => r.fail("the fixture has pos_encoding but the model has none".into()),
        }
    }

    let out = model.forward(&x, mask)?;
    r.check("embeddings", &out.latents, get("embeddings")?, OUTPUT_TOL);
    r.check("logits", &out.logits, get("logits")?, OUTPUT_TOL);
    let labels: Vec<usize> = get("labels")?
        .to_vec()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let loss = out.logits.cross_entropy(&labels, 0.0)?;
    r.check("loss", &loss, get("loss")?, OUTPUT_TOL);

    let grads = loss.backward()?;
    match grads.get(&input) {
        Some(g) => r.check("grad.input", g, get("grad.input")?, GRAD_TOL),
        None => r.fail("no gradient for the input".into()),
    }
    let ours: BTreeMap<String, Tensor> = imp
        .names
        .to_reference(
            &|n| {
                model
                    .params()
                    .get(n)
                    .and_then(|p| p.grad(&grads).ok().cloned())
            },
            false,
        )?
        .into_iter()
        .collect();
    let global = tensors
        .iter()
        .filter(|(n, _)| n.starts_with("grad."))
        .flat_map(|(_, t)| t.to_vec())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = ZERO_FLOOR * global;
    let mut checked = 0;
    for (name, t) in &tensors {
        let Some(pname) = name.strip_prefix("grad.") else {
            continue;
        };
        if pname == "input" {
            continue;
        }
        match ours.get(pname) {
            Some(g) => {
                r.check_grad(name, g, t, floor);
                checked += 1;
            }
            None => r.fail(format!("`{name}` has no counterpart in our gradients")),
        }
    }
    for n in ours.keys() {
        if !by_name.contains_key(format!("grad.{n}").as_str()) {
            r.fail(format!(
                "our gradient for `{n}` has no `grad.{n}` in the fixture"
            ));
        }
    }
    r.lines
        .push(format!("  {checked} parameter gradients checked"));
    Ok(())
}

#[test]
fn golden_fixtures() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() {
        let msg = format!("no golden fixtures (*.safetensors) in {}", dir.display());
        if in_ci() {
            panic!("{msg} (CI=true: the fixtures are required)");
        }
        eprintln!("SKIPPED golden_fixtures: {msg}");
        return;
    }
    let kernel = match std::env::var("PERCEIVER_ATTN_KERNEL").as_deref() {
        Ok("reference") => AttentionKernel::Reference,
        _ => AttentionKernel::Fused,
    };
    let mut failures = Vec::new();
    for f in &files {
        let r = check_fixture(f, kernel);
        println!("{} ({kernel:?} attention):", r.fixture);
        for l in &r.lines {
            println!("{l}");
        }
        println!(
            "  worst: outputs {:.2e} ({}), gradients {:.2e} ({})",
            r.worst[0].0, r.worst[0].1, r.worst[1].0, r.worst[1].1
        );
        failures.extend(r.failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
