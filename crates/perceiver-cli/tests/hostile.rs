//! The binary under hostile conditions: output folders holding other files, tampered and
//! special-file checkpoints, absurd sizes and flags, inconsistent data. Every case ends within
//! seconds with one line on standard error and a non-zero exit, and no file the tool did not
//! create is lost or changed.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SMALL: &[&str] = &["--train-size", "16", "--test-size", "8", "--epochs", "1"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A finished one-epoch run in `out`.
fn small_run(out: &Path) {
    train(out, SMALL);
}

/// `train --out out` with the tiny model and `extra` flags (argument list); a flag in `extra`
/// replaces the default one.
fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["train", "--out", s(out)];
    for pair in TINY.chunks(2).chain(SMALL.chunks(2)) {
        if !extra.contains(&pair[0]) {
            a.extend_from_slice(pair);
        }
    }
    a.extend_from_slice(extra);
    a
}

/// Rewrites the JSON file at `path` through `f`.
fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[test]
fn train_takes_only_a_new_or_empty_folder() {
    let d = tmp("out-owned");
    let outside = d.join("outside.txt");
    std::fs::write(&outside, "precious").unwrap();
    type Seed = fn(&Path, &Path);
    let seeds: &[(&str, Seed)] = &[
        ("user file in checkpoint/", |o, _| {
            std::fs::create_dir_all(o.join("checkpoint")).unwrap();
            std::fs::write(o.join("checkpoint/mine.txt"), "user").unwrap();
        }),
        ("user folder checkpoint.old", |o, _| {
            std::fs::create_dir_all(o.join("checkpoint.old")).unwrap();
            std::fs::write(o.join("checkpoint.old/a"), "user").unwrap();
        }),
        ("empty user folder checkpoint.new", |o, _| {
            std::fs::create_dir_all(o.join("checkpoint.new")).unwrap();
        }),
        ("user metrics.jsonl", |o, _| {
            std::fs::write(o.join("metrics.jsonl"), "{\"mine\": 1}\n").unwrap();
        }),
        ("user curves.png", |o, _| {
            std::fs::write(o.join("curves.png"), "not a png").unwrap();
        }),
        ("metrics.jsonl linked outside", |o, outside| {
            std::os::unix::fs::symlink(outside, o.join("metrics.jsonl")).unwrap();
        }),
        ("regular file named checkpoint", |o, _| {
            std::fs::write(o.join("checkpoint"), "user").unwrap();
        }),
        ("unrelated file", |o, _| {
            std::fs::write(o.join("notes.txt"), "user").unwrap();
        }),
    ];
    for (i, (what, seed)) in seeds.iter().enumerate() {
        let out = d.join(format!("case{i}"));
        std::fs::create_dir_all(&out).unwrap();
        seed(&out, &outside);
        let before = snapshot(&out);
        let e = refused(&train_args(&out, &[]));
        assert!(e.contains("not empty"), "{what}: {e}");
        assert_eq!(snapshot(&out), before, "{what}: the folder changed");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    let e = refused(&train_args(&outside, &[]));
    assert!(e.contains("not a directory"), "{e}");
    // An empty folder is taken; a new one is created.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    train(&empty, SMALL);
    assert!(empty.join("checkpoint/trainer.json").is_file());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_folder_holding_a_run_is_refused_and_left_as_it_was() {
    let d = tmp("out-run");
    let out = d.join("run");
    small_run(&out);
    let before = snapshot(&out);
    let e = refused(&train_args(&out, &["--seed", "9"]));
    assert!(e.contains("--resume"), "{e}");
    assert_eq!(snapshot(&out), before, "the earlier run's files changed");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_non_finite_run_fails_and_keeps_the_last_good_checkpoint() {
    let d = tmp("nan");
    // A new run that diverges: non-zero exit, and the folder it created is gone again.
    let fresh = d.join("fresh");
    let e = refused(&train_args(&fresh, &["--lr", "1e30", "--epochs", "2"]));
    assert!(e.contains("no checkpoint was written"), "{e}");
    assert!(
        !fresh.exists(),
        "a run that failed before its first checkpoint left files"
    );
    // A resumed run that diverges keeps the good checkpoint, which still loads.
    let out = d.join("run");
    small_run(&out);
    edit_json(&out.join("checkpoint/trainer.json"), |v| {
        v["extra"]["hyper"]["lr"] = serde_json::json!(1e30);
    });
    let before = snapshot(&out);
    let e = refused(&[
        "train",
        "--resume",
        s(&out),
        "--epochs",
        "3",
        "--threads",
        "1",
    ]);
    assert!(
        e.contains("last good checkpoint") && e.contains("epoch 1"),
        "{e}"
    );
    assert_eq!(snapshot(&out), before, "the run's files changed");
    let j = succeed(&["eval", "--checkpoint", s(&out), "--threads", "1"]);
    assert_eq!(j["epochs"], 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn stored_non_finite_or_missing_metrics_read_back() {
    let d = tmp("null-metrics");
    let out = d.join("run");
    small_run(&out);
    edit_json(&out.join("checkpoint/trainer.json"), |v| {
        v["extra"]["history"][0]["test_loss"] = Value::Null;
        v["extra"]["history"][0]["train_loss"] = Value::Null;
        v["extra"]["history"][0]["epoch_s"] = serde_json::json!("NaN");
    });
    succeed(&["eval", "--checkpoint", s(&out), "--threads", "1"]);
    let j = succeed(&[
        "train",
        "--resume",
        s(&out),
        "--epochs",
        "2",
        "--threads",
        "1",
    ]);
    assert_eq!(j["epochs"], 2);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let d = tmp("sizes");
    let out = d.join("run");
    for flags in [
        &["--latents", "1000000000"][..],
        &["--latent-dim", "1000000000"],
        &["--depth", "100000"],
        &["--bands", "1000000000"],
        &["--max-memory", "1K"],
    ] {
        let e = refused(&train_args(&out, flags));
        assert!(
            e.contains("memory") || e.contains("too large"),
            "{flags:?}: {e}"
        );
        assert!(!out.exists(), "{flags:?} created the output folder");
    }
    let e = refused(&train_args(&out, &["--batch-size", "100000000"]));
    assert!(e.contains("fewer than one batch"), "{e}");
    let e = refused(&train_args(&out, &["--train-size", "18446744073709551615"]));
    assert!(e.contains("train"), "{e}");
    let cfg = d.join("huge.json");
    std::fs::write(
        &cfg,
        r#"{"num_latents": 1000000000, "latent_dim": 1000000000}"#,
    )
    .unwrap();
    refused(&train_args(&out, &["--config", s(&cfg)]));
    refused(&["info", "--config", s(&cfg)]);
    // A checkpoint whose config.json claims a huge model.
    small_run(&out);
    edit_json(&out.join("checkpoint/config.json"), |v| {
        v["num_latents"] = serde_json::json!(1_000_000_000u64);
    });
    let png = d.join("x.png");
    write_png(&png);
    refused(&["eval", "--checkpoint", s(&out)]);
    refused(&["predict", "--checkpoint", s(&out), s(&png)]);
    refused(&["train", "--resume", s(&out), "--epochs", "2"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn special_files_are_refused_by_name() {
    let d = tmp("special");
    let good = d.join("good");
    small_run(&good);
    let png = d.join("x.png");
    write_png(&png);
    let files = [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer.json",
        "config.json",
    ];
    for (i, name) in files.iter().enumerate() {
        for (j, kind) in ["FIFO", "character device"].iter().enumerate() {
            let run_dir = d.join(format!("case{i}-{j}"));
            copy_dir(&good, &run_dir);
            let target = run_dir.join("checkpoint").join(name);
            std::fs::remove_file(&target).unwrap();
            if j == 0 {
                mkfifo(&target);
            } else {
                std::os::unix::fs::symlink("/dev/zero", &target).unwrap();
            }
            let commands: Vec<Vec<&str>> = vec![
                vec!["eval", "--checkpoint", s(&run_dir), "--threads", "1"],
                vec!["predict", "--checkpoint", s(&run_dir), s(&png)],
                vec![
                    "train",
                    "--resume",
                    s(&run_dir),
                    "--epochs",
                    "2",
                    "--threads",
                    "1",
                ],
            ];
            for args in commands {
                if *name == "optimizer.safetensors" && args[0] != "train" {
                    continue; // only resuming reads the optimizer state
                }
                let e = refused(&args);
                assert!(e.contains(kind) && e.contains(name), "{args:?}: {e}");
            }
        }
    }
    let fifo = d.join("config.fifo");
    mkfifo(&fifo);
    let e = refused(&["info", "--config", s(&fifo)]);
    assert!(e.contains("FIFO"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn counters_never_wrap() {
    let d = tmp("counters");
    let out = d.join("run");
    small_run(&out);
    for (field, value) in [("step", u64::MAX), ("epoch", u64::MAX - 1)] {
        let run_dir = d.join(field);
        copy_dir(&out, &run_dir);
        edit_json(&run_dir.join("checkpoint/trainer.json"), |v| {
            v[field] = serde_json::json!(value);
        });
        refused(&[
            "train",
            "--resume",
            s(&run_dir),
            "--epochs",
            "18446744073709551615",
        ]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn thread_counts_are_capped() {
    let d = tmp("threads");
    for (i, n) in ["10000", "18446744073709551615"].iter().enumerate() {
        let out = d.join(format!("run{i}"));
        let mut args = vec!["train", "--out", s(&out)];
        args.extend_from_slice(&TINY[..TINY.len() - 2]); // without --threads 1
        args.extend_from_slice(SMALL);
        args.extend_from_slice(&["--threads", n]);
        let o = run_within(&args, std::time::Duration::from_secs(120));
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("capped"), "{}", text(&o.stderr));
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_size_zero_means_no_test_split() {
    let d = tmp("no-test");
    let out = d.join("run");
    let mut args = train_args(&out, &[]);
    let i = args.iter().position(|a| *a == "--test-size").unwrap();
    args[i + 1] = "0";
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j = last_json(&o);
    assert!(
        j["test_accuracy"].is_null() && j["test_loss"].is_null(),
        "{j}"
    );
    assert!(text(&o.stdout).contains("no test split"));
    assert!(text(&o.stdout).contains("no test (--test-size 0)"));
    let e = refused(&["eval", "--checkpoint", s(&out), "--test-size", "0"]);
    assert!(e.contains("--test-size 0"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn resuming_a_finished_run_says_it_is_finished() {
    let d = tmp("finished");
    let out = d.join("run");
    small_run(&out);
    let before = snapshot(&out);
    let e = refused(&["train", "--resume", s(&out)]);
    assert!(e.contains("finished") && e.contains("--epochs"), "{e}");
    assert_eq!(snapshot(&out), before);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn class_names_must_fit_the_model() {
    let d = tmp("classes");
    let out = d.join("run");
    small_run(&out);
    edit_json(&out.join("checkpoint/trainer.json"), |v| {
        v["extra"]["data"]["class_names"]
            .as_array_mut()
            .unwrap()
            .pop();
    });
    let png = d.join("x.png");
    write_png(&png);
    let e = refused(&["eval", "--checkpoint", s(&out)]);
    assert!(e.contains("class"), "{e}");
    let e = refused(&["predict", "--checkpoint", s(&out), s(&png)]);
    assert!(e.contains("class"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn eval_on_another_dataset_names_the_mismatch() {
    let d = tmp("other-dataset");
    let out = d.join("run");
    small_run(&out);
    let e = refused(&[
        "eval",
        "--checkpoint",
        s(&out),
        "--dataset",
        "points",
        "--test-size",
        "4",
    ]);
    assert!(e.contains("trained on shapes"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Trains into a new folder beside user files and symlinks, then resumes with user files
/// planted inside the run folder: nothing but the tool's own files changes.
#[test]
fn scenario_nothing_but_the_tools_files_changes() {
    let d = tmp("scenario");
    std::fs::write(d.join("user.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(d.join("user.txt"), d.join("link")).unwrap();
    std::fs::write(d.join("outside.jsonl"), "outside\n").unwrap();
    let out = d.join("run");
    train(
        &out,
        &[
            "--train-size",
            "16",
            "--test-size",
            "8",
            "--epochs",
            "3",
            "--stop-after",
            "1",
        ],
    );
    // Plant: a symlink where the metrics are, a note, a user folder named like a leftover.
    std::fs::remove_file(out.join("metrics.jsonl")).unwrap();
    std::os::unix::fs::symlink(d.join("outside.jsonl"), out.join("metrics.jsonl")).unwrap();
    std::fs::write(out.join("notes.txt"), "user notes").unwrap();
    std::fs::create_dir(out.join("checkpoint.old")).unwrap();
    std::fs::write(out.join("checkpoint.old/keep.txt"), "user").unwrap();
    // The tool's own names inside the run folder; everything else is the user's.
    let owned = |p: &PathBuf| {
        let mut c = p
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        c.next().is_some_and(|x| x == "run")
            && c.next().is_some_and(|x| {
                [
                    "checkpoint",
                    "metrics.jsonl",
                    "curves.png",
                    ".perceiver-run",
                ]
                .contains(&x.as_str())
            })
    };
    let user = |snap: std::collections::BTreeMap<PathBuf, Vec<u8>>| {
        snap.into_iter()
            .filter(|(p, _)| !owned(p))
            .collect::<Vec<_>>()
    };
    let before = user(snapshot(&d));
    // The user folder `checkpoint.old` is in the way of the checkpoint swap: refused, kept.
    let e = refused(&["train", "--resume", s(&out), "--threads", "1"]);
    assert!(e.contains("checkpoint.old"), "{e}");
    assert_eq!(user(snapshot(&d)), before);
    let j = succeed(&["eval", "--checkpoint", s(&out), "--threads", "1"]);
    assert_eq!(j["epochs"], 1);
    // Without it the run continues; the metrics symlink is replaced, not written through.
    std::fs::remove_dir_all(out.join("checkpoint.old")).unwrap();
    let before = user(snapshot(&d));
    let j = succeed(&["train", "--resume", s(&out), "--threads", "1"]);
    assert_eq!(j["epochs"], 3);
    assert_eq!(user(snapshot(&d)), before);
    assert_eq!(
        std::fs::read_to_string(d.join("outside.jsonl")).unwrap(),
        "outside\n"
    );
    let m = std::fs::symlink_metadata(out.join("metrics.jsonl")).unwrap();
    assert!(m.is_file());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Writes `n` small PNGs per class under `root/split/class/`.
fn image_folder(root: &Path, split: &str, classes: &[&str], n: u32) {
    for (k, class) in classes.iter().enumerate() {
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::GrayImage::from_fn(16, 16, |x, y| {
                image::Luma([((x * (k as u32 + 1) + y * i) % 256) as u8])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn test_classes_are_mapped_by_name_or_refused() {
    let d = tmp("folders");
    let args = |root: &Path, out: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--dataset", "image-folder", "--image-size", "16"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--data-dir".into(),
            s(root).into(),
            "--out".into(),
            s(out).into(),
        ]);
        a.extend(TINY.iter().map(|s| s.to_string()));
        a.extend(["--epochs".into(), "1".into()]);
        a
    };
    // The test split lacks a class: mapped by name, and the run says so.
    let root = d.join("subset");
    image_folder(&root, "train", &["a", "b", "c"], 4);
    image_folder(&root, "test", &["a", "c"], 2);
    let out = d.join("run");
    let a = args(&root, &out);
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no 'b'"), "{}", text(&o.stderr));
    let j = succeed(&["eval", "--checkpoint", s(&out), "--threads", "1"]);
    assert_eq!(j["examples"], 4);
    // The test split has a class the training split lacks: refused, naming it.
    let root = d.join("unknown");
    image_folder(&root, "train", &["a", "b"], 4);
    image_folder(&root, "test", &["a", "zebra"], 2);
    let a = args(&root, &d.join("run2"));
    let e = refused(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("zebra"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}
