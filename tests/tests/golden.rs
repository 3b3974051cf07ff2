//! Golden test: the Rust Perceiver against the reference implementations' exact answers.
//!
//! For every `*.safetensors` in the golden directory (`$PERCEIVER_GOLDEN_DIR`, else
//! `../shared/golden`: [`perceiver_tests::golden_dir`]), dispatch on the metadata `reference`
//! key (lucidrains `perceiver-pytorch` or Hugging Face `transformers`), build the model from the
//! metadata config, import the `param.*` state dict, run the forward on `input` (and `mask`),
//! and compare `pos_encoding` (when present), `embeddings`, `logits`, `loss` and every `grad.*`
//! (parameters under their reference names, and `grad.input` in the reference's input layout).
//! Nothing is specific to the given files.
//!
//! # The judgement (golden/README.md, "Float64 references" and "Tolerances")
//! Every compared tensor `X` is measured against `ref64.X`, the same quantity computed by the
//! same reference in float64: with `err(a, b) = max |a - b| / max |b|`, ours passes when
//!
//! `err(ours, ref64.X) <= max(tol, 2 x err(X, ref64.X))`
//!
//! where `X` is PyTorch's own f32 result and `tol` is [`OUTPUT_TOL`] for forward outputs,
//! [`GRAD_TOL`] for gradients. So ours must be as accurate as a faithful f32 implementation, or
//! at least as close to the truth as PyTorch's f32 result where f32 cannot do better (a badly
//! conditioned softmax: one decoder query over a few near-equal latents). The same rule holds
//! for every tensor of every fixture and for both attention kernels: plain ops (matmul,
//! softmax, matmul: the references' order of operations) and the fused kernel (the default).
//!
//! A tensor without a `ref64.X` (`pos_encoding` in the lucidrains files) is compared with
//! PyTorch's f32 `X` against `tol` alone, and says so. A gradient that is zero in exact
//! arithmetic (the key biases: softmax ignores a constant added to a row of logits) is rounding
//! noise in any f32 implementation; when its exact magnitude is below [`ZERO_FLOOR`] times the
//! fixture's largest gradient, ours must be below that level too.
//!
//! Without the fixtures the test is skipped with a message, except under `CI=true`, where it
//! fails ([`perceiver_tests::golden_files`]).

use perceiver_model::import::{hf, lucidrains};
use perceiver_model::{import_reference, AttentionKernel, Reference};
use perceiver_nn::io::load_safetensors as read_safetensors;
use perceiver_tensor::Tensor;
use perceiver_tests::golden_files;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Forward outputs (pos_encoding, embeddings, logits, loss): max abs error / max abs value.
const OUTPUT_TOL: f32 = 1e-5;
/// Gradients: max abs error / max abs value.
const GRAD_TOL: f32 = 1e-4;
/// PyTorch's own f32 error against float64, times this, also bounds ours.
const TORCH_FACTOR: f32 = 2.0;
/// An exact gradient whose largest magnitude is below this fraction of the fixture's largest
/// gradient is zero in exact arithmetic (the key biases). f32 cannot resolve it (its epsilon
/// is 1.2e-7), so a relative comparison is meaningless; ours must then be as small.
const ZERO_FLOOR: f32 = 1e-8;
/// The prefix of the float64 references.
const REF64: &str = "ref64.";

fn max_abs(t: &Tensor) -> f32 {
    t.to_vec().iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// `max |a - b| / scale` (plain max abs error when `scale` is zero); NaN propagates.
fn rel_diff(a: &Tensor, b: &Tensor, scale: f32) -> f32 {
    let err = a
        .to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, |m, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        });
    if scale > 0.0 {
        err / scale
    } else {
        err
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Output,
    Grad,
}

/// One compared tensor: ours, PyTorch's f32 result and the float64 one.
struct Computed {
    name: String,
    ours: Tensor,
    torch: Tensor,
    /// `ref64.<name>`, when the fixture has it.
    exact: Option<Tensor>,
    kind: Kind,
}

/// Everything one run (one attention kernel) computed for a fixture.
#[derive(Default)]
struct Run {
    computed: Vec<Computed>,
    problems: Vec<String>,
    info: Vec<String>,
    /// Absolute level under which a gradient counts as analytically zero.
    zero_floor: f32,
}

fn run_fixture(path: &Path, kernel: AttentionKernel) -> Result<Run, Box<dyn std::error::Error>> {
    let mut run = Run::default();
    let (tensors, meta) = read_safetensors(path)?;
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let get = |n: &str| -> Result<Tensor, String> {
        by_name
            .get(n)
            .map(|t| (*t).clone())
            .ok_or_else(|| format!("the fixture has no `{n}` tensor"))
    };
    let exact = |n: &str| {
        by_name
            .get(format!("{REF64}{n}").as_str())
            .map(|t| (*t).clone())
    };
    let params: Vec<(String, Tensor)> = tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("param.").map(|s| (s.to_string(), t.clone())))
        .collect();
    let mut imp = import_reference(&params, &meta)?;
    imp.model.set_attention_kernel(kernel);
    let model = &imp.model;
    run.info.push(format!(
        "reference {:?} ({}), {} parameters, sharing {:?}",
        imp.reference,
        meta.get("reference").map(String::as_str).unwrap_or("?"),
        model.num_params(),
        model.sharing_plan()
    ));
    let mut push = |name: &str, ours: Tensor, torch: Tensor, kind: Kind| {
        run.computed.push(Computed {
            name: name.to_string(),
            ours,
            torch,
            exact: exact(name),
            kind,
        })
    };

    if imp.reference == Reference::Lucidrains {
        let tied = lucidrains::tied_from_metadata(&meta)?;
        if tied != imp.names.alias_prefixes {
            run.problems.push(format!(
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
            Some(ours) => push("pos_encoding", ours, (*pe).clone(), Kind::Output),
            None => run
                .problems
                .push("the fixture has pos_encoding but the model has none".into()),
        }
    }

    let out = model.forward(&x, mask)?;
    push(
        "embeddings",
        out.latents.clone(),
        get("embeddings")?,
        Kind::Output,
    );
    push("logits", out.logits.clone(), get("logits")?, Kind::Output);
    let labels: Vec<usize> = get("labels")?
        .to_vec()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let loss = out.logits.cross_entropy(&labels, 0.0)?;
    push("loss", loss.detach(), get("loss")?, Kind::Output);

    let grads = loss.backward()?;
    match grads.get(&input) {
        Some(g) => push("grad.input", g.clone(), get("grad.input")?, Kind::Grad),
        None => run.problems.push("no gradient for the input".into()),
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
    for (name, t) in &tensors {
        let Some(pname) = name.strip_prefix("grad.") else {
            continue;
        };
        if pname == "input" {
            continue;
        }
        match ours.get(pname) {
            Some(g) => push(name, g.clone(), t.clone(), Kind::Grad),
            None => run
                .problems
                .push(format!("`{name}` has no counterpart in our gradients")),
        }
    }
    for n in ours.keys() {
        if !by_name.contains_key(format!("grad.{n}").as_str()) {
            run.problems.push(format!(
                "our gradient for `{n}` has no `grad.{n}` in the fixture"
            ));
        }
    }
    // Every float64 reference must be used: one left over is a quantity this test ignores.
    for (name, _) in &tensors {
        if let Some(n) = name.strip_prefix(REF64) {
            if !run.computed.iter().any(|c| c.name == n) {
                run.problems
                    .push(format!("`{name}` is not compared with anything of ours"));
            }
        }
    }
    // The fixture's largest gradient, exact where the fixture has it.
    run.zero_floor = ZERO_FLOOR
        * run
            .computed
            .iter()
            .filter(|c| c.kind == Kind::Grad)
            .map(|c| max_abs(c.exact.as_ref().unwrap_or(&c.torch)))
            .fold(0.0f32, f32::max);
    Ok(run)
}

/// The worst case of one kind: value and tensor name.
#[derive(Clone, Default)]
struct Worst(f32, String);

impl Worst {
    fn update(&mut self, v: f32, name: &str) {
        if v > self.0 || (v.is_nan() && !self.0.is_nan()) {
            *self = Worst(v, name.to_string());
        }
    }
}

impl std::fmt::Display for Worst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1.is_empty() {
            write!(f, "-")
        } else {
            write!(f, "{:.2e} ({})", self.0, self.1)
        }
    }
}

/// Per kernel: worst error against the exact answer over outputs and gradients, and worst
/// ratio of error to bound.
#[derive(Clone, Default)]
struct KernelSummary {
    outputs: Worst,
    grads: Worst,
    ratio: Worst,
}

struct Report {
    fixture: String,
    lines: Vec<String>,
    failures: Vec<String>,
    summaries: Vec<(&'static str, KernelSummary)>,
    /// Tensors judged against `ref64.*`, and against PyTorch's f32 result (no `ref64.*`).
    against_exact: usize,
    against_f32: usize,
}

impl Report {
    fn fail(&mut self, msg: String) {
        self.lines.push(format!("  FAIL {msg}"));
        self.failures.push(format!("{}: {msg}", self.fixture));
    }
}

/// Judges every kernel's run by the same rule (see the module docs).
fn judge(fixture: String, runs: Vec<(&'static str, Result<Run, String>)>) -> Report {
    let mut r = Report {
        fixture,
        lines: Vec::new(),
        failures: Vec::new(),
        summaries: Vec::new(),
        against_exact: 0,
        against_f32: 0,
    };
    let mut ok_runs = Vec::new();
    for (kernel, run) in runs {
        match run {
            Ok(run) => ok_runs.push((kernel, run)),
            Err(e) => r.fail(format!("{kernel} kernel: error: {e}")),
        }
    }
    if !r.failures.is_empty() {
        return r;
    }
    let runs = ok_runs;
    let Some((_, first)) = runs.first() else {
        return r;
    };
    r.lines.extend(first.info.iter().map(|l| format!("  {l}")));
    for (kernel, run) in &runs {
        for p in &run.problems {
            r.fail(format!("{kernel} kernel: {p}"));
        }
    }
    let names: Vec<&str> = first.computed.iter().map(|c| c.name.as_str()).collect();
    for (kernel, run) in &runs[1..] {
        let theirs: Vec<&str> = run.computed.iter().map(|c| c.name.as_str()).collect();
        if theirs != names {
            r.fail(format!(
                "the {kernel} kernel computed other tensors than the {} kernel",
                runs[0].0
            ));
        }
    }
    let mut summaries = vec![KernelSummary::default(); runs.len()];
    let zero_floor = first.zero_floor;
    for c in &first.computed {
        let name = &c.name;
        // This tensor in every run, in order.
        let ours: Vec<&Tensor> = runs
            .iter()
            .filter_map(|(_, run)| run.computed.iter().find(|d| d.name == *name))
            .map(|d| &d.ours)
            .collect();
        let truth = c.exact.as_ref().unwrap_or(&c.torch);
        let shapes_ok = ours.len() == runs.len()
            && ours.iter().all(|t| t.shape() == truth.shape())
            && c.torch.shape() == truth.shape();
        if !shapes_ok {
            let got: Vec<_> = ours.iter().map(|t| t.shape().to_vec()).collect();
            r.fail(format!(
                "`{name}`: our shapes {got:?} (per kernel), PyTorch {:?}, exact {:?}",
                c.torch.shape(),
                truth.shape()
            ));
            continue;
        }
        let (tol, kind_label) = match c.kind {
            Kind::Output => (OUTPUT_TOL, "output"),
            Kind::Grad => (GRAD_TOL, "gradient"),
        };
        let scale = max_abs(truth);
        let against = if c.exact.is_some() {
            r.against_exact += 1;
            "ref64"
        } else {
            r.against_f32 += 1;
            "PyTorch f32 (no ref64)"
        };

        if c.kind == Kind::Grad && scale < zero_floor {
            let torch_max = max_abs(&c.torch);
            let mut parts = Vec::new();
            let mut all_ok = true;
            for ((kernel, _), t) in runs.iter().zip(&ours) {
                let m = max_abs(t);
                let ok = m < zero_floor;
                all_ok &= ok;
                parts.push(format!("{kernel} {m:.1e}"));
                if !ok {
                    r.failures.push(format!(
                        "{}: `{name}` ({kernel} kernel) is ~0 in exact arithmetic ({against} \
                         {scale:.2e}) but ours reaches {m:.2e} (limit {zero_floor:.1e})",
                        r.fixture
                    ));
                }
            }
            r.lines.push(format!(
                "  {} {name}: ~0 in exact arithmetic: max |ours| {}, PyTorch f32 {torch_max:.1e}, \
                 {against} {scale:.1e}; ours must be < {zero_floor:.1e}",
                if all_ok { "ok  " } else { "FAIL" },
                parts.join(", ")
            ));
            continue;
        }

        let e_torch = if c.exact.is_some() {
            rel_diff(&c.torch, truth, scale)
        } else {
            0.0
        };
        // `f32::max` ignores a NaN operand, so a NaN in PyTorch's error leaves `tol`.
        let bound = tol.max(TORCH_FACTOR * e_torch);
        let mut parts = Vec::new();
        let mut all_ok = true;
        for (((kernel, _), t), s) in runs.iter().zip(&ours).zip(&mut summaries) {
            let e = rel_diff(t, truth, scale);
            let ok = e <= bound;
            all_ok &= ok;
            parts.push(format!("{kernel} {e:.2e}"));
            match c.kind {
                Kind::Output => s.outputs.update(e, name),
                Kind::Grad => s.grads.update(e, name),
            }
            s.ratio.update(e / bound, name);
            if !ok {
                r.failures.push(format!(
                    "{}: `{name}` ({kernel} kernel): error {e:.3e} against {against} > bound \
                     {bound:.2e} ({kind_label} tolerance {tol:.0e}, PyTorch f32 {e_torch:.2e})",
                    r.fixture
                ));
            }
        }
        let torch_part = if c.exact.is_some() {
            format!("PyTorch f32 {e_torch:.2e}, ")
        } else {
            String::new()
        };
        let from_torch = if bound > tol {
            " [bound from PyTorch's own error]"
        } else {
            ""
        };
        r.lines.push(format!(
            "  {} {name} vs {against}: ours {}, {torch_part}bound {bound:.2e}{from_torch}",
            if all_ok { "ok  " } else { "FAIL" },
            parts.join(", ")
        ));
    }
    let grads = first
        .computed
        .iter()
        .filter(|c| c.kind == Kind::Grad)
        .count();
    r.lines.push(format!(
        "  {} tensors compared ({grads} gradients including grad.input): {} against ref64, {} \
         against PyTorch f32 (no ref64)",
        first.computed.len(),
        r.against_exact,
        r.against_f32
    ));
    r.summaries = runs.iter().map(|(k, _)| *k).zip(summaries).collect();
    r
}

#[test]
fn golden_fixtures() {
    let Some(files) = golden_files("golden_fixtures") else {
        return;
    };
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let runs = [
            ("plain", AttentionKernel::Reference),
            ("fused", AttentionKernel::Fused),
        ]
        .into_iter()
        .map(|(label, k)| (label, run_fixture(f, k).map_err(|e| e.to_string())))
        .collect();
        let r = judge(name, runs);
        println!("{}:", r.fixture);
        for l in &r.lines {
            println!("{l}");
        }
        for (kernel, s) in &r.summaries {
            println!(
                "  worst, {kernel} kernel: error/bound {}; error vs exact: outputs {}, gradients {}",
                s.ratio, s.outputs, s.grads
            );
        }
        failures.extend(r.failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every fixture reads with our safetensors reader, holds what the golden test needs, and
/// agrees with the `safetensors` crate.
#[test]
fn golden_files_load() {
    let Some(files) = golden_files("golden_files_load") else {
        return;
    };
    for path in files {
        let (tensors, meta) =
            read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!tensors.is_empty(), "{}", path.display());
        assert!(
            meta.contains_key("config"),
            "{}: no `config` metadata",
            path.display()
        );
        let loss = tensors
            .iter()
            .find(|(n, _)| n == "loss")
            .expect("a `loss` tensor");
        assert!(loss.1.shape().is_empty() && loss.1.to_vec()[0].is_finite());
        assert!(tensors.iter().any(|(n, _)| n.starts_with("param.")));
        // Same contents as the reference reader.
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), tensors.len());
        for (name, t) in &tensors {
            let view = st.tensor(name).unwrap();
            assert_eq!(view.shape(), t.shape(), "{name}");
            let first = view
                .data()
                .get(..4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            assert_eq!(first, t.to_vec().first().copied(), "{name}");
        }
        eprintln!("{}: {} tensors", path.display(), tensors.len());
    }
}

/// The rule itself, on made-up numbers: PyTorch's own error widens the bound (the badly
/// conditioned case), the tolerance holds where PyTorch is accurate, an analytically zero
/// gradient must stay at the noise level, and both kernels are held to the same rule.
#[test]
fn judgement_rule() {
    let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap();
    let c = |name: &str, ours: &[f32], torch: &[f32], exact: Option<&[f32]>, kind| Computed {
        name: name.to_string(),
        ours: t(ours),
        torch: t(torch),
        exact: exact.map(t),
        kind,
    };
    let exact: &[f32] = &[1.0, 0.5];
    // PyTorch is 4e-4 off: ours may be up to 8e-4 off.
    let torch_off: &[f32] = &[1.0004, 0.5];
    // PyTorch is exact: ours may be GRAD_TOL = 1e-4 off.
    let torch_ok: &[f32] = &[1.0, 0.5];
    let run = |ours_ill: f32, ours_well: f32, ours_zero: f32| Run {
        computed: vec![
            c(
                "grad.ill",
                &[ours_ill, 0.5],
                torch_off,
                Some(exact),
                Kind::Grad,
            ),
            c(
                "grad.well",
                &[ours_well, 0.5],
                torch_ok,
                Some(exact),
                Kind::Grad,
            ),
            c(
                "grad.zero",
                &[ours_zero, 0.0],
                &[1e-12, 0.0],
                Some(&[1e-20, 0.0]),
                Kind::Grad,
            ),
            c("pos", &[2.0], &[2.0], None, Kind::Output),
        ],
        zero_floor: ZERO_FLOOR,
        ..Run::default()
    };
    let r = judge(
        "made-up".into(),
        vec![
            ("plain", Ok(run(1.0006, 1.00005, 1e-12))),
            ("fused", Ok(run(1.0010, 1.0002, 1e-6))),
        ],
    );
    let failed: Vec<&str> = r
        .failures
        .iter()
        .map(|f| f.split('`').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        failed,
        ["grad.ill", "grad.well", "grad.zero"],
        "{:#?}",
        r.failures
    );
    assert!(
        r.failures.iter().all(|f| f.contains("fused kernel")),
        "{:#?}",
        r.failures
    );
    assert_eq!((r.against_exact, r.against_f32), (3, 1));
}
