//! Helpers shared by the end-to-end tests of the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test: this package's, or `$PERCEIVER_TEST_BIN` (to run the suite against
/// another build, e.g. an older commit's).
pub fn bin() -> Command {
    let exe = std::env::var_os("PERCEIVER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_perceiver")));
    let mut c = Command::new(exe);
    c.env("NO_COLOR", "1");
    c
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("perceiver-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn run(args: &[&str]) -> Output {
    run_within(args, std::time::Duration::from_secs(300))
}

/// Runs the binary; a run that takes longer than `limit` is killed and fails the test.
pub fn run_within(args: &[&str], limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = bin()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON object on the last line of standard output.
pub fn last_json(o: &Output) -> serde_json::Value {
    let out = text(&o.stdout);
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {out}"))
}

/// Runs the binary with `args`, which must succeed, and returns the JSON object on the last
/// line of its standard output.
pub fn succeed(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(o.status.success(), "{args:?} failed: {}", text(&o.stderr));
    last_json(&o)
}

pub const TINY: &[&str] = &[
    "--latents",
    "8",
    "--latent-dim",
    "16",
    "--bands",
    "4",
    "--depth",
    "1",
    "--batch-size",
    "8",
    "--threads",
    "1",
];

pub fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "train failed: {}", text(&o.stderr));
    o
}

pub fn write_png(path: &Path) {
    let img = image::GrayImage::from_fn(40, 40, |x, y| {
        let (dx, dy) = (x as f32 - 20.0, y as f32 - 20.0);
        image::Luma([if dx * dx + dy * dy < 100.0 { 230 } else { 20 }])
    });
    img.save(path).unwrap();
}

/// Runs `args`, expecting failure with exactly one line on standard error and no panic.
pub fn fails(args: &[&str]) -> String {
    let o = run(args);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

/// Runs `args`, expecting a refusal within 30 seconds: a non-zero exit status (not a panic,
/// an abort or a signal), one line on standard error, no "internal error". Returns the line.
pub fn refused(args: &[&str]) -> String {
    let o = run_within(args, std::time::Duration::from_secs(30));
    let err = text(&o.stderr);
    assert!(
        o.status.code().is_some(),
        "{args:?} was killed by a signal: {err}"
    );
    assert!(!o.status.success(), "{args:?} should fail");
    assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {err}");
    // Besides notes, one line: the error.
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].starts_with("error: ")
            && !err.contains("internal error")
            && !err.contains("backtrace"),
        "{args:?}: {err}"
    );
    assert!(
        children_peak_rss() < 1536 << 20,
        "{args:?}: a run of the binary peaked at {} MiB",
        children_peak_rss() >> 20
    );
    err
}

/// The largest peak resident memory of any child process waited for so far, in bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) }, 0);
    u.ru_maxrss as u64 * 1024 // kilobytes on Linux
}

/// Every entry under `root` (symlinks not followed) with what it is: file contents, a link's
/// target, or a directory marker; keyed by the path relative to `root`.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let v = if m.file_type().is_symlink() {
                let mut v = b"link:".to_vec();
                v.extend(std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
                v
            } else if m.is_dir() {
                stack.push(p.clone());
                b"dir".to_vec()
            } else if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                b"special".to_vec()
            };
            out.insert(rel, v);
        }
    }
    out
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}
