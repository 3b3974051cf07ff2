//! `cargo xtask bench --compare-torch PYTHON [--rounds N] [--quick] [--filter TEXT]`: ours and
//! PyTorch side by side.
//!
//! For each workload of `bench.md` (A forward, A training step, B forward, C forward and
//! forward + backward at three input lengths, and the GEMM shapes), the two run alternately in
//! separate processes, ours, PyTorch, ours, PyTorch, ... (`--rounds`, default 2), on the same
//! number of threads. PyTorch runs `../shared/tools/torch_perceiver.py` (and, for GEMM, a few
//! lines of `torch.mm`) with the given interpreter, fused SDPA attention. Each round gives one
//! ratio (ours over PyTorch, > 1 = we are faster); the table shows the median ratio and its
//! spread. Without a working PyTorch it says so and reports ours alone.

use super::run_point_process;
use crate::{project_root, target_dir, Result};
use serde_json::{json, Value};
use std::process::Command;

/// How a workload is measured on each side and compared.
struct Workload {
    name: &'static str,
    /// Our point: (group, id).
    ours: (&'static str, String),
    /// Arguments of `torch_perceiver.py`, or `None` for a GEMM shape (m, k, n).
    torch_args: Option<Vec<String>>,
    gemm: Option<(usize, usize, usize)>,
    /// How to read a rate (higher is better) from each side's record.
    metric: Metric,
}

#[derive(Clone, Copy)]
enum Metric {
    /// Ours `throughput` (examples/s) vs the torch key (examples/s).
    Examples(&'static str),
    /// Ours `median_s` vs the torch key (seconds): rate = 1 / time.
    Seconds(&'static str),
    /// GFLOP/s on both sides.
    Gflops,
}

fn workloads(quick: bool) -> Vec<Workload> {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    // Config A at batch 32 in torch's `mode`, compared in examples/s under the torch `key`.
    let config_a = |name, ours: &str, mode, key| Workload {
        name,
        ours: ("model", ours.into()),
        torch_args: s(&["--config", "A", "--mode", mode, "--attn", "sdpa"]),
        gemm: None,
        metric: Metric::Examples(key),
    };
    let mut w = vec![
        config_a(
            "A forward (batch 32)",
            "A forward batch 32",
            "fwd",
            "fwd_examples_per_s",
        ),
        config_a(
            "A training step (batch 32, Adam)",
            "A train step batch 32",
            "train",
            "train_examples_per_s",
        ),
    ];
    if !quick {
        w.push(Workload {
            name: "B forward (batch 1)",
            ours: ("model", "B forward batch 1".into()),
            torch_args: s(&[
                "--config", "B", "--mode", "fwd", "--attn", "sdpa", "--iters", "3", "--warmup", "1",
            ]),
            gemm: None,
            metric: Metric::Seconds("fwd_median_s"),
        });
    }
    let ns: &[usize] = if quick {
        &[16_384]
    } else {
        &[16_384, 65_536, 262_144]
    };
    for &n in ns {
        for (mode, ours, key) in [
            ("fwd", "fwd", "fwd_median_s"),
            ("fwdbwd", "fwd+bwd", "fwdbwd_median_s"),
        ] {
            let iters = if n >= 262_144 { "3" } else { "5" };
            w.push(Workload {
                name: if mode == "fwd" {
                    "C forward"
                } else {
                    "C forward + backward"
                },
                ours: ("attention", format!("{ours} N={n}")),
                torch_args: Some(
                    [
                        "--config",
                        "C",
                        "--n",
                        &n.to_string(),
                        "--mode",
                        mode,
                        "--attn",
                        "sdpa",
                        "--iters",
                        iters,
                        "--warmup",
                        "1",
                    ]
                    .iter()
                    .map(|x| x.to_string())
                    .collect(),
                ),
                gemm: None,
                metric: Metric::Seconds(key),
            });
        }
    }
    for (m, k, n) in [(512, 1024, 3072), (2048, 128, 512)] {
        w.push(Workload {
            name: "GEMM",
            ours: ("gemm", format!("gemm [{m}x{k}]x[{k}x{n}]")),
            torch_args: None,
            gemm: Some((m, k, n)),
            metric: Metric::Gflops,
        });
    }
    w
}

fn torch_works(python: &str) -> std::result::Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{python} cannot import torch: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn last_json(stdout: &[u8], what: &str) -> Result<Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{what}: no JSON result ({e}): {text}").into())
}

fn run_torch(python: &str, w: &Workload, threads: usize) -> Result<Value> {
    let mut cmd = Command::new(python);
    cmd.env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string());
    if let Some((m, k, n)) = w.gemm {
        let code = format!(
            "import torch, time, json, statistics\n\
             torch.set_num_threads({threads})\n\
             a = torch.randn({m}, {k}); b = torch.randn({k}, {n})\n\
             for _ in range(5): torch.mm(a, b)\n\
             ts = []\n\
             for _ in range(15):\n\
             \x20   t = time.perf_counter(); [torch.mm(a, b) for _ in range(5)]; ts.append((time.perf_counter() - t) / 5)\n\
             med = statistics.median(ts)\n\
             print(json.dumps(dict(median_s=med, gflops=2 * {m} * {k} * {n} / med / 1e9)))\n"
        );
        cmd.args(["-c", &code]);
    } else {
        let script = project_root()
            .join("..")
            .join("shared")
            .join("tools")
            .join("torch_perceiver.py");
        cmd.arg(script)
            .args(w.torch_args.as_ref().expect("torch workload"))
            .args(["--threads", &threads.to_string()]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "PyTorch run for {} failed: {}",
            w.name,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    last_json(&out.stdout, "PyTorch")
}

fn rate(metric: Metric, ours: bool, r: &Value) -> Option<f64> {
    match (metric, ours) {
        (Metric::Examples(_), true) => r["throughput"].as_f64(),
        (Metric::Examples(key), false) => r[key].as_f64(),
        (Metric::Seconds(_), true) => r["median_s"].as_f64().map(|t| 1.0 / t),
        (Metric::Seconds(key), false) => r[key].as_f64().map(|t| 1.0 / t),
        (Metric::Gflops, _) => r["gflops"].as_f64(),
    }
}

fn fmt_rate(metric: Metric, v: f64) -> String {
    match metric {
        Metric::Examples(_) => format!("{v:.1} ex/s"),
        Metric::Seconds(_) => format!("{:.3} s", 1.0 / v),
        Metric::Gflops => format!("{v:.0} GFLOP/s"),
    }
}

/// Growth of resident memory per input token, KiB (C points only).
fn growth(ours: bool, r: &Value, n: Option<f64>) -> Option<f64> {
    if ours {
        return r["growth_kib_per_token"].as_f64();
    }
    let (peak, before) = (r["peak_rss_mib"].as_f64()?, r["rss_before_mib"].as_f64()?);
    Some((peak - before) * 1024.0 / n?)
}

/// Entry point of `--compare-torch`.
pub fn run(
    python: &str,
    threads: usize,
    rounds: usize,
    quick: bool,
    filter: Option<&str>,
) -> Result<()> {
    let torch = torch_works(python);
    match &torch {
        Ok(v) => eprintln!(
            "==> side by side with PyTorch {v} ({python}), {threads} threads, {rounds} rounds"
        ),
        Err(e) => eprintln!("==> PyTorch unavailable ({e}): reporting ours alone"),
    }
    let mut records = Vec::new();
    let mut table = format!(
        "\n## Side by side with PyTorch ({}; {threads} threads; {rounds} alternating rounds; our \
         GEMM backend {:?})\n\n\
         | workload | point | ours | PyTorch (SDPA) | ratio ours/PyTorch (median, min–max) | memory growth per token ours / PyTorch |\n\
         |---|---|---:|---:|---:|---:|\n",
        torch.as_ref().map(|v| format!("torch {v}")).unwrap_or_else(|e| e.clone()),
        perceiver_kernels::gemm::Backend::detect()
    );
    for w in workloads(quick) {
        if let Some(f) = filter {
            // Group, workload and point, as `cargo xtask bench --filter` matches them.
            let hay = format!("{}/{} {}", w.ours.0, w.name, w.ours.1).to_lowercase();
            if !hay.contains(&f.to_lowercase()) {
                continue;
            }
        }
        eprintln!("    {} / {}", w.name, w.ours.1);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_rec, mut theirs_rec) = (Value::Null, Value::Null);
        for _ in 0..rounds {
            let r = run_point_process(w.ours.0, &w.ours.1, threads, quick)?;
            ours.extend(rate(w.metric, true, &r));
            ours_rec = r;
            if torch.is_ok() {
                let t = run_torch(python, &w, threads)?;
                theirs.extend(rate(w.metric, false, &t));
                theirs_rec = t;
            }
        }
        let med = super::median;
        let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
        let tokens = w
            .ours
            .1
            .strip_prefix("fwd+bwd N=")
            .or(w.ours.1.strip_prefix("fwd N="))
            .and_then(|n| n.parse::<f64>().ok());
        let g_ours = growth(true, &ours_rec, tokens);
        let g_theirs = if tokens.is_some() {
            growth(false, &theirs_rec, tokens)
        } else {
            None
        };
        let cell = |v: Option<f64>| {
            v.map(|x| fmt_rate(w.metric, x))
                .unwrap_or_else(|| "-".into())
        };
        let ratio_cell = match med(&ratios) {
            Some(m) => {
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{m:.2}x ({lo:.2}–{hi:.2})")
            }
            None => "-".into(),
        };
        let mem_cell = match (g_ours, g_theirs) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2} KiB"),
            (Some(a), None) => format!("{a:.2} KiB / -"),
            _ => String::new(),
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            w.name,
            w.ours.1,
            cell(med(&ours)),
            cell(med(&theirs)),
            ratio_cell,
            mem_cell
        ));
        records.push(json!({
            "workload": w.name, "point": w.ours.1, "ours": ours, "pytorch": theirs,
            "ratios": ratios, "ours_record": ours_rec, "pytorch_record": theirs_rec,
            "growth_kib_per_token_ours": g_ours, "growth_kib_per_token_pytorch": g_theirs,
        }));
    }
    println!("{table}");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(
        dir.join("compare_torch.json"),
        serde_json::to_string_pretty(&Value::Array(records))?,
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("compare_torch.md"), &table)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!("wrote target/bench/compare_torch.json and compare_torch.md");
    Ok(())
}
