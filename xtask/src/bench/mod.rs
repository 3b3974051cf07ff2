//! `cargo xtask bench`: kernel benchmarks with a small harness of our own.
//!
//! # Design
//! - A benchmark **group** ([`Group`]) is a named list of **points** ([`Point`]): one routine on
//!   one shape, with the work it does ([`Work`]) so time converts to GFLOP/s or GB/s. Groups are
//!   listed in [`GROUPS`]; adding one is a module with a `GROUP` constant and one line there.
//! - A point's inputs are allocated by its `setup` closure only in the process that measures it,
//!   so a point can also run alone in a child process (`cargo xtask bench-point`), where
//!   `VmHWM` from `/proc/self/status` is its peak memory. Groups with [`Group::isolated`] (and
//!   every group under `--isolate`) run that way.
//! - Timing ([`measure`]): warm-up, then several samples of a fixed number of calls; the record
//!   holds the median per-call time and the min/max spread of the samples. Absolute times on
//!   these shared 2-core machines move by up to 2x between runs, so compare runs made back to
//!   back, and read the spread before trusting a difference.
//! - Threads: the rayon global pool is built with `--threads` (default 2) before anything runs,
//!   so the kernels see exactly that many threads.
//! - Output: `target/bench/<group>.json` (an array of records) and a markdown table per group,
//!   printed and written to `target/bench/summary.md`.

mod attention;
mod compare;
mod data;
mod gemm;
mod model;
mod ops;

use crate::{cargo, project_root, target_dir, Result};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Instant;

/// f32 peak of the machine's vector units at ~2.5 GHz on 2 cores, by the GEMM backend the
/// machine gets: 64 FLOP/cycle per core with AVX-512 (two FMA ports; also for the AMX tile
/// kernel, which computes f32 products on the tile units and can go beyond it: above 100% in
/// the tables), 32 with AVX2 + FMA (the portable backend). Returns the GFLOP/s and the name of
/// the vector units.
pub fn machine_peak() -> (f64, &'static str) {
    if perceiver_kernels::gemm::Backend::detect().has_avx512() {
        (320.0, "AVX-512")
    } else {
        (160.0, "AVX2")
    }
}

/// Every benchmark group, in the order they run.
///
/// - `gemm`, `softmax`, `layer_norm`, `gelu`: kernels on the shapes of `bench.md`;
/// - `attention`: config C, one cross-attention block at N = 16k / 64k / 256k inputs, forward and
///   forward + backward, one process per point with peak memory and growth per input token;
/// - `model`: configs A (forward, Adam training step) and B (forward) through the model;
/// - `data`: loader throughput on the shared datasets.
///
/// To add a group, add a module with a `GROUP` constant and a line here.
pub const GROUPS: &[Group] = &[
    gemm::GROUP,
    ops::SOFTMAX,
    ops::LAYER_NORM,
    ops::GELU,
    attention::GROUP,
    model::GROUP,
    data::GROUP,
];

/// Resident memory (KiB) recorded by a point's setup once its inputs exist, so memory growth
/// can be measured from there (as `tools/torch_perceiver.py` measures `rss_before` after
/// creating the input). 0 = not recorded.
pub static SETUP_RSS_KIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Input tokens of the current point, for memory growth per token. 0 = not applicable.
pub static POINT_TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called by a point's setup after allocating its inputs: records the baseline resident memory
/// and the number of input tokens.
pub fn mark_setup_done(tokens: usize) {
    use std::sync::atomic::Ordering;
    SETUP_RSS_KIB.store(proc_status_kib("VmRSS").unwrap_or(0), Ordering::SeqCst);
    POINT_TOKENS.store(tokens as u64, Ordering::SeqCst);
}

/// A named set of benchmark points, reported as one table and one JSON file.
pub struct Group {
    /// File and table name, e.g. `gemm`.
    pub name: &'static str,
    /// One line for the table heading.
    pub about: &'static str,
    /// Run each point in its own process and record its peak memory.
    pub isolated: bool,
    /// The points; `quick` selects a smaller set.
    pub points: fn(quick: bool) -> Vec<Point>,
}

/// Allocates a point's inputs and returns the routine to time (called once per measurement).
pub type Setup = Box<dyn FnOnce() -> Box<dyn FnMut()> + Send>;

/// One routine on one shape.
pub struct Point {
    /// What runs, e.g. `gemm` or `matmul`.
    pub name: String,
    /// The shape, e.g. `[512x1024]x[1024x3072]`.
    pub shape: String,
    /// Where the shape comes from, e.g. `B latent MLP up`.
    pub note: String,
    /// The work of one call.
    pub work: Work,
    /// Builds the inputs and the routine.
    pub setup: Setup,
}

impl Point {
    /// Identifier within the group (`name shape`), used by `bench-point --point`.
    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.shape)
    }

    fn matches(&self, group: &str, filter: &str) -> bool {
        let hay = format!("{group}/{} {}", self.id(), self.note).to_lowercase();
        hay.contains(&filter.to_lowercase())
    }
}

/// The work of one call of a point.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Floating-point operations (2·m·k·n for a GEMM).
    Flops(f64),
    /// A model step on `examples` examples doing `flops` floating-point operations in all;
    /// reported as examples/s (and GFLOP/s).
    Examples {
        /// Examples per call.
        examples: f64,
        /// Floating-point operations per call.
        flops: f64,
    },
    /// Items of some kind per call (batches, clips), reported as items per second.
    Items {
        /// Items per call.
        count: f64,
        /// Unit of the throughput, e.g. `batches/s`.
        unit: &'static str,
    },
    /// Memory-bound kernels: minimum bytes moved (inputs read once, output written once) and
    /// elements produced.
    Bytes {
        /// Bytes read plus bytes written.
        bytes: f64,
        /// Elements of the output.
        elems: f64,
    },
}

/// Harness settings.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Minimum warm-up time, seconds.
    warmup_s: f64,
    /// Minimum time of one sample, seconds (a sample averages several calls of a fast routine).
    sample_s: f64,
    /// Number of samples.
    repeats: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                warmup_s: 0.05,
                sample_s: 0.02,
                repeats: 5,
            }
        } else {
            Plan {
                warmup_s: 0.3,
                sample_s: 0.1,
                repeats: 15,
            }
        }
    }
}

/// Per-call times of the samples of one measurement.
#[derive(Debug)]
struct Timing {
    /// Seconds per call, one entry per sample, sorted.
    samples: Vec<f64>,
    /// Calls per sample.
    iters: usize,
}

/// The median of `values` (the mean of the two middle values for an even count); `None` when
/// empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some(0.5 * (s[n / 2 - 1] + s[n / 2])),
    }
}

impl Timing {
    fn median(&self) -> f64 {
        median(&self.samples).expect("a measurement has samples")
    }
    fn min(&self) -> f64 {
        self.samples[0]
    }
    fn max(&self) -> f64 {
        self.samples[self.samples.len() - 1]
    }
}

/// Warms `f` up, then times `plan.repeats` samples of equal call counts.
fn measure(f: &mut dyn FnMut(), plan: Plan) -> Timing {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < 2 || start.elapsed().as_secs_f64() < plan.warmup_s {
        f();
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / f64::from(calls);
    let iters = ((plan.sample_s / per_call).ceil() as usize).max(1);
    let mut samples: Vec<f64> = (0..plan.repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Timing { samples, iters }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Default)]
struct Options {
    threads: Option<usize>,
    quick: bool,
    filter: Option<String>,
    isolate: bool,
    list: bool,
    group: Option<String>,
    point: Option<String>,
    compare_torch: Option<String>,
    rounds: Option<usize>,
}

/// The value `v` of the count option `flag`, which must be a whole number of at least 1.
fn at_least_one(flag: &str, v: String) -> Result<usize> {
    let n: usize = v
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v}"))?;
    if n == 0 {
        return Err(format!("{flag} must be at least 1").into());
    }
    Ok(n)
}

fn parse(args: &[OsString], point_mode: bool) -> Result<Options> {
    let mut opts = Options::default();
    let mut it = args.iter().map(|a| {
        a.to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("argument {a:?} is not UTF-8"))
    });
    while let Some(arg) = it.next() {
        let arg = arg?;
        let mut value = |flag: &str| -> Result<String> {
            Ok(it.next().ok_or_else(|| format!("{flag} needs a value"))??)
        };
        match arg.as_str() {
            "--threads" => {
                opts.threads = Some(at_least_one("--threads", value("--threads")?)?);
            }
            "--quick" => opts.quick = true,
            "--filter" if !point_mode => opts.filter = Some(value("--filter")?),
            "--isolate" if !point_mode => opts.isolate = true,
            "--list" if !point_mode => opts.list = true,
            "--compare-torch" if !point_mode => {
                opts.compare_torch = Some(value("--compare-torch")?)
            }
            "--rounds" if !point_mode => {
                opts.rounds = Some(at_least_one("--rounds", value("--rounds")?)?);
            }
            "--group" if point_mode => opts.group = Some(value("--group")?),
            "--point" if point_mode => opts.point = Some(value("--point")?),
            other => {
                let cmd = if point_mode { "bench-point" } else { "bench" };
                return Err(format!(
                    "`{cmd}`: unknown argument {other:?} (see `cargo xtask help`)"
                )
                .into());
            }
        }
    }
    Ok(opts)
}

/// In a debug build, re-runs the same command through `cargo run --release` and exits with its
/// status, so `cargo xtask bench` (a debug build through the alias) measures optimised code.
fn ensure_release(command: &str, args: &[OsString]) -> Result<()> {
    if !cfg!(debug_assertions) || std::env::var_os("XTASK_BENCH_NO_REEXEC").is_some() {
        return Ok(());
    }
    eprintln!("xtask: debug build; re-running as `cargo run --release -p xtask -- {command} ...`");
    let status = cargo()
        .args(["run", "--release", "-p", "xtask", "--", command])
        .args(args)
        .env("XTASK_BENCH_NO_REEXEC", "1")
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn init_threads(threads: usize) -> Result<()> {
    perceiver_nn::runtime::compute_pool(Some(threads))
        .build_global()
        .map_err(|e| format!("could not build the rayon pool: {e}").into())
}

/// `cargo xtask bench [--threads N] [--quick] [--filter TEXT] [--isolate] [--list]`.
pub fn cli(args: &[OsString]) -> Result<()> {
    let opts = parse(args, false)?;
    if opts.list {
        return list(&opts);
    }
    ensure_release("bench", args)?;
    let threads = opts.threads.unwrap_or(2);
    if let Some(python) = &opts.compare_torch {
        return compare::run(
            python,
            threads,
            opts.rounds.unwrap_or(2),
            opts.quick,
            opts.filter.as_deref(),
        );
    }
    init_threads(threads)?;
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;

    let mut summary = summary_header(threads, opts.quick, args);
    let mut ran = 0;
    for group in GROUPS {
        let points: Vec<Point> = (group.points)(opts.quick)
            .into_iter()
            .filter(|p| {
                opts.filter
                    .as_deref()
                    .is_none_or(|f| p.matches(group.name, f))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let isolated = group.isolated || opts.isolate;
        eprintln!(
            "==> {} ({} point(s), {} thread(s){})",
            group.name,
            points.len(),
            threads,
            if isolated { ", one process each" } else { "" }
        );
        let mut records = Vec::new();
        for point in points {
            let record = if isolated {
                run_isolated(group, &point, threads, opts.quick)?
            } else {
                measure_point(group, point, threads, opts.quick)
            };
            eprintln!("    {}", one_line(&record));
            records.push(record);
        }
        let json_path = out_dir.join(format!("{}.json", group.name));
        let text = serde_json::to_string_pretty(&records)?;
        std::fs::write(&json_path, text + "\n")
            .map_err(|e| format!("{}: {e}", json_path.display()))?;
        let table = markdown_table(group, &records);
        print!("{table}");
        summary.push_str(&table);
        ran += 1;
    }
    if ran == 0 {
        return Err(format!(
            "no benchmark matches --filter {:?} (see `cargo xtask bench --list`)",
            opts.filter.unwrap_or_default()
        )
        .into());
    }
    let summary_path = out_dir.join("summary.md");
    std::fs::write(&summary_path, &summary)
        .map_err(|e| format!("{}: {e}", summary_path.display()))?;
    let shown = summary_path
        .strip_prefix(project_root())
        .unwrap_or(&summary_path);
    eprintln!(
        "wrote {} and one <group>.json per group beside it",
        shown.display()
    );
    Ok(())
}

fn list(opts: &Options) -> Result<()> {
    for group in GROUPS {
        let iso = if group.isolated {
            " (one process per point)"
        } else {
            ""
        };
        println!("{}: {}{iso}", group.name, group.about);
        for p in (group.points)(opts.quick) {
            if opts
                .filter
                .as_deref()
                .is_none_or(|f| p.matches(group.name, f))
            {
                println!("    {:<44} {}", p.id(), p.note);
            }
        }
    }
    Ok(())
}

/// `cargo xtask bench-point --group G --point ID [--threads N] [--quick]`: measures one point in
/// this process and prints its record, with the peak resident memory, as one line of JSON.
pub fn cli_point(args: &[OsString]) -> Result<()> {
    let opts = parse(args, true)?;
    ensure_release("bench-point", args)?;
    let (Some(group_name), Some(point_id)) = (opts.group.as_deref(), opts.point.as_deref()) else {
        return Err(
            "bench-point needs --group and --point (see `cargo xtask bench --list`)".into(),
        );
    };
    let group = GROUPS
        .iter()
        .find(|g| g.name == group_name)
        .ok_or_else(|| format!("no benchmark group {group_name:?}"))?;
    let point = (group.points)(opts.quick)
        .into_iter()
        .find(|p| p.id() == point_id)
        .ok_or_else(|| format!("group {group_name} has no point {point_id:?}"))?;
    let threads = opts.threads.unwrap_or(2);
    init_threads(threads)?;
    let base_kib = proc_status_kib("VmRSS");
    let mut rec = measure_point(group, point, threads, opts.quick);
    rec["base_rss_kib"] = json!(base_kib);
    let peak = proc_status_kib("VmHWM");
    rec["peak_rss_kib"] = json!(peak);
    let setup = SETUP_RSS_KIB.load(std::sync::atomic::Ordering::SeqCst);
    let tokens = POINT_TOKENS.load(std::sync::atomic::Ordering::SeqCst);
    if setup > 0 {
        rec["setup_rss_kib"] = json!(setup);
        if let (Some(peak), true) = (peak, tokens > 0) {
            let growth = peak.saturating_sub(setup) as f64 / tokens as f64;
            rec["growth_kib_per_token"] = json!(growth);
            rec["tokens"] = json!(tokens);
        }
    }
    println!("{rec}");
    Ok(())
}

/// Runs one point in a child `bench-point` process and returns its record.
fn run_isolated(group: &Group, point: &Point, threads: usize, quick: bool) -> Result<Value> {
    run_point_process(group.name, &point.id(), threads, quick)
}

/// Runs point `id` of group `group` in a child `bench-point` process and returns its record.
fn run_point_process(group: &str, id: &str, threads: usize, quick: bool) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench-point", "--group", group, "--point", id])
        .args(["--threads", &threads.to_string()])
        .stderr(std::process::Stdio::inherit());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("bench-point {} / {} failed ({})", group, id, out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("bench-point {id}: bad output {line:?}: {e}").into())
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), or `None` off Linux.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Allocates a point's inputs, measures it, frees the inputs and returns its JSON record.
fn measure_point(group: &Group, point: Point, threads: usize, quick: bool) -> Value {
    let id = point.id();
    let Point {
        name,
        shape,
        note,
        work,
        setup,
    } = point;
    // Set up and measure on a worker of the pool, as `perceiver train` runs: parallel loops
    // then fork from a worker instead of being injected from outside the pool.
    let t = rayon::scope(|_| {
        let mut routine = setup();
        measure(&mut *routine, Plan::new(quick))
    });
    let median = t.median();
    let mut r = json!({
        "group": group.name,
        "id": id,
        "name": name,
        "shape": shape,
        "note": note,
        "threads": threads,
        "quick": quick,
        "median_s": median,
        "min_s": t.min(),
        "max_s": t.max(),
        "repeats": t.samples.len(),
        "iters_per_repeat": t.iters,
    });
    match work {
        Work::Flops(flops) => {
            let gflops = flops / median / 1e9;
            r["flops"] = json!(flops);
            r["gflops"] = json!(gflops);
            r["gflops_min"] = json!(flops / t.max() / 1e9);
            r["gflops_max"] = json!(flops / t.min() / 1e9);
            r["throughput"] = json!(gflops);
            r["unit"] = json!("GFLOP/s");
            r["pct_machine_peak"] = json!(100.0 * gflops / machine_peak().0);
        }
        Work::Examples { examples, flops } => {
            r["examples"] = json!(examples);
            r["flops"] = json!(flops);
            r["throughput"] = json!(examples / median);
            r["unit"] = json!("examples/s");
            r["examples_per_s_min"] = json!(examples / t.max());
            r["examples_per_s_max"] = json!(examples / t.min());
            r["gflops"] = json!(flops / median / 1e9);
            r["pct_machine_peak"] = json!(100.0 * flops / median / 1e9 / machine_peak().0);
        }
        Work::Items { count, unit } => {
            r["items"] = json!(count);
            r["throughput"] = json!(count / median);
            r["unit"] = json!(unit);
        }
        Work::Bytes { bytes, elems } => {
            r["bytes"] = json!(bytes);
            r["throughput"] = json!(bytes / median / 1e9);
            r["unit"] = json!("GB/s");
            r["melem_per_s"] = json!(elems / median / 1e6);
        }
    }
    r
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn num(r: &Value, key: &str) -> f64 {
    r[key].as_f64().unwrap_or(f64::NAN)
}

fn throughput_cell(r: &Value) -> String {
    let unit = r["unit"].as_str().unwrap_or("");
    let mut s = format!("{:.1} {unit}", num(r, "throughput"));
    if r["unit"] == "examples/s" {
        let _ = write!(s, " ({:.0} GFLOP/s)", num(r, "gflops"));
    }
    if r.get("melem_per_s").is_some() {
        let _ = write!(s, " ({:.0} Melem/s)", num(r, "melem_per_s"));
    }
    s
}

fn one_line(r: &Value) -> String {
    format!(
        "{:<28} {:<26} median {:>10}  {}",
        r["name"].as_str().unwrap_or(""),
        r["shape"].as_str().unwrap_or(""),
        fmt_time(num(r, "median_s")),
        throughput_cell(r)
    )
}

fn markdown_table(group: &Group, records: &[Value]) -> String {
    let threads = records
        .first()
        .and_then(|r| r["threads"].as_u64())
        .unwrap_or(0);
    let plural = if threads == 1 { "" } else { "s" };
    let has_peak = records.iter().any(|r| r.get("pct_machine_peak").is_some());
    let has_mem = records.iter().any(|r| r.get("peak_rss_kib").is_some());
    let mut s = format!(
        "\n## {} — {} ({threads} thread{plural})\n\n",
        group.name, group.about
    );
    s.push_str("| benchmark | shape | from | median | min – max | throughput |");
    let mut rule = String::from("|---|---|---|---:|---:|---:|");
    if has_peak {
        let (peak, units) = machine_peak();
        let _ = write!(s, " % of {peak:.0} GFLOP/s {units} peak |");
        rule.push_str("---:|");
    }
    let has_growth = records
        .iter()
        .any(|r| r.get("growth_kib_per_token").is_some());
    if has_mem {
        s.push_str(" peak RSS |");
        rule.push_str("---:|");
    }
    if has_growth {
        s.push_str(" growth per input token |");
        rule.push_str("---:|");
    }
    s.push('\n');
    s.push_str(&rule);
    s.push('\n');
    for r in records {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} – {} | {} |",
            r["name"].as_str().unwrap_or(""),
            r["shape"].as_str().unwrap_or(""),
            r["note"].as_str().unwrap_or(""),
            fmt_time(num(r, "median_s")),
            fmt_time(num(r, "min_s")),
            fmt_time(num(r, "max_s")),
            throughput_cell(r),
        );
        if has_peak {
            match r.get("pct_machine_peak").and_then(Value::as_f64) {
                Some(p) => {
                    let _ = write!(s, " {p:.0} % |");
                }
                None => s.push_str(" |"),
            }
        }
        if has_mem {
            match r.get("peak_rss_kib").and_then(Value::as_f64) {
                Some(k) => {
                    let _ = write!(s, " {:.1} MiB |", k / 1024.0);
                }
                None => s.push_str(" |"),
            }
        }
        if has_growth {
            match r.get("growth_kib_per_token").and_then(Value::as_f64) {
                Some(g) => {
                    let _ = write!(s, " {g:.3} KiB |");
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

fn summary_header(threads: usize, quick: bool, args: &[OsString]) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(project_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "# Benchmarks\n\n`cargo xtask bench {}` — commit {commit}, {threads} rayon threads, {} \
         mode, {cpu} ({} logical CPUs), GEMM backend {:?}.\n\nMedian of the per-call time over the repeats, with \
         the fastest and slowest repeat; GEMM FLOPs are 2·m·k·n; GB/s counts one read of the \
         input and one write of the output.\n",
        args.join(" "),
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        perceiver_kernels::gemm::Backend::detect()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        // Unsorted input; an even count averages the two middle values.
        assert!((median(&[1.71, 0.93]).unwrap() - 1.32).abs() < 1e-12);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn timing_statistics() {
        let t = Timing {
            samples: vec![1.0, 2.0, 3.0, 10.0],
            iters: 1,
        };
        assert_eq!(t.median(), 2.5);
        assert_eq!((t.min(), t.max()), (1.0, 10.0));
    }

    #[test]
    fn measure_counts_calls() {
        let mut calls = 0usize;
        let t = measure(&mut || calls += 1, Plan::new(true));
        assert_eq!(t.samples.len(), 5);
        assert!(calls >= 2 + 5 * t.iters);
    }

    #[test]
    fn point_ids_are_unique() {
        for quick in [true, false] {
            for group in GROUPS {
                let points = (group.points)(quick);
                assert!(!points.is_empty(), "{} has no points", group.name);
                let mut ids: Vec<String> = points.iter().map(Point::id).collect();
                ids.sort();
                ids.dedup();
                assert_eq!(
                    ids.len(),
                    points.len(),
                    "duplicate point ids in {}",
                    group.name
                );
            }
        }
    }

    #[test]
    fn parse_rejects_unknown_and_zero_threads() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(parse(&a(&["--threads", "0"]), false).is_err());
        assert!(parse(&a(&["--bogus"]), false).is_err());
        assert!(parse(&a(&["--group", "gemm"]), false).is_err());
        let o = parse(
            &a(&["--threads", "1", "--quick", "--filter", "gemm"]),
            false,
        )
        .unwrap();
        assert_eq!(
            (o.threads, o.quick, o.filter.as_deref()),
            (Some(1), true, Some("gemm"))
        );
    }

    #[test]
    fn proc_status_has_memory_fields() {
        if cfg!(target_os = "linux") {
            assert!(proc_status_kib("VmHWM").unwrap() > 0);
            assert!(proc_status_kib("VmRSS").unwrap() > 0);
        }
    }
}
