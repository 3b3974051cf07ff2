//! End-to-end tests of the `perceiver` binary: a tiny train + eval + predict, exact resume,
//! and one-line errors with a non-zero exit for bad input.
//!
//! They live in this package (not the workspace `tests/` crate) because Cargo only provides
//! `CARGO_BIN_EXE_perceiver` to the integration tests of the package that builds the binary.

mod common;

use common::*;
use std::path::Path;

#[test]
fn train_eval_predict_end_to_end() {
    let d = tmp("e2e");
    let out = d.join("run");
    let o = train(
        &out,
        &[
            "--train-size",
            "48",
            "--test-size",
            "24",
            "--epochs",
            "2",
            "--seed",
            "3",
        ],
    );
    let j = last_json(&o);
    for key in [
        "dataset",
        "test_accuracy",
        "test_loss",
        "epochs",
        "params",
        "train_examples_per_s",
        "wall_s",
    ] {
        assert!(!j[key].is_null(), "missing {key} in {j}");
    }
    assert_eq!(j["dataset"], "shapes");
    assert_eq!(j["epochs"], 2);
    assert!(out.join("checkpoint/model.safetensors").is_file());
    assert!(out.join("checkpoint/optimizer.safetensors").is_file());
    assert!(out.join("checkpoint/trainer.json").is_file());
    assert!(out.join("curves.png").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let epochs = metrics.lines().filter(|l| l.contains("\"epoch\",")).count();
    assert!(epochs >= 1 && metrics.lines().count() >= 2, "{metrics}");

    let e = succeed(&[
        "eval",
        "--checkpoint",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(e["dataset"], "shapes");
    assert_eq!(e["params"], j["params"]);
    // Evaluation of the saved weights reproduces the last test accuracy of training.
    assert_eq!(e["test_accuracy"], j["test_accuracy"]);
    // Per-class accuracies are keyed by class name, each in [0, 1].
    let per_class = e["per_class_accuracy"].as_object().unwrap();
    assert!(!per_class.is_empty() && per_class.keys().all(|k| k.parse::<usize>().is_err()));
    assert!(per_class
        .values()
        .all(|a| (0.0..=1.0).contains(&a.as_f64().unwrap())));

    let png = d.join("disc.png");
    write_png(&png);
    let p = succeed(&[
        "predict",
        "--checkpoint",
        out.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    let top = p["predictions"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let sum: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!(sum > 0.0 && sum <= 1.0 + 1e-5);
    // --json: one object per file, the same classes by name.
    let o = run(&[
        "predict",
        "--json",
        "--top",
        "3",
        "--checkpoint",
        out.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j = last_json(&o);
    assert_eq!(text(&o.stdout).lines().count(), 1);
    assert_eq!(j["file"], png.display().to_string());
    let top3 = j["top"].as_array().unwrap();
    assert_eq!(top3.len(), 3);
    assert_eq!(top3[0]["label"], top[0]["label"]);

    let o = run(&["info", "--checkpoint", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("parameters:"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn point_clouds_train_and_predict_a_mesh() {
    let d = tmp("points");
    let out = d.join("run");
    train(
        &out,
        &[
            "--dataset",
            "points",
            "--train-size",
            "16",
            "--test-size",
            "8",
            "--epochs",
            "1",
        ],
    );
    let off = d.join("cube.off");
    std::fs::write(
        &off,
        "OFF\n8 6 0\n-1 -1 -1\n1 -1 -1\n1 1 -1\n-1 1 -1\n-1 -1 1\n1 -1 1\n1 1 1\n-1 1 1\n\
         4 0 1 2 3\n4 4 5 6 7\n4 0 1 5 4\n4 2 3 7 6\n4 0 3 7 4\n4 1 2 6 5\n",
    )
    .unwrap();
    let p = succeed(&[
        "predict",
        "--checkpoint",
        out.to_str().unwrap(),
        off.to_str().unwrap(),
    ]);
    assert_eq!(p["predictions"][0]["top"].as_array().unwrap().len(), 5);
    std::fs::remove_dir_all(&d).unwrap();
}

fn step_losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .map(|v| format!("{} {}", v["step"], v["loss"]))
        .collect()
}

#[test]
fn resume_continues_exactly() {
    let d = tmp("resume");
    let common = [
        "--train-size",
        "32",
        "--test-size",
        "16",
        "--epochs",
        "2",
        "--log-every",
        "1",
        "--seed",
        "11",
        "--label-smoothing",
        "0.1",
    ];
    let straight = d.join("straight");
    let a = last_json(&train(&straight, &common));
    let parts = d.join("parts");
    let mut first: Vec<&str> = common.to_vec();
    first.extend(["--stop-after", "1"]);
    let o = train(&parts, &first);
    assert_eq!(last_json(&o)["epochs"], 1);
    let b = succeed(&[
        "train",
        "--resume",
        parts.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(b["epochs"], 2);
    let (la, lb) = (step_losses(&straight), step_losses(&parts));
    assert_eq!(la.len(), 8);
    assert_eq!(la, lb);
    assert_eq!(a["test_loss"], b["test_loss"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_input_exits_with_one_line() {
    let d = tmp("bad");
    let ds = d.to_str().unwrap();
    fails(&["train", "--no-such-flag"]);
    fails(&["train", "--dataset", "nope"]);
    fails(&["train", "--epochs", "many"]);
    fails(&["frobnicate"]);
    let e = fails(&["train", "--preset", "no-such-preset", "--out", ds]);
    assert!(e.contains("no-such-preset"), "{e}");
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"num_latents\": ").unwrap();
    fails(&["train", "--config", bad.to_str().unwrap(), "--out", ds]);
    std::fs::write(&bad, "{\"num_latnets\": 3}").unwrap();
    let e = fails(&["info", "--config", bad.to_str().unwrap()]);
    assert!(e.contains("num_latnets"), "{e}");
    let missing = d.join("missing");
    let e = fails(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        missing.to_str().unwrap(),
        "--out",
        ds,
    ]);
    assert!(e.contains("mnist"), "{e}");
    fails(&["eval", "--checkpoint", missing.to_str().unwrap()]);
    // A corrupt checkpoint.
    let run_dir = d.join("run");
    train(
        &run_dir,
        &["--train-size", "8", "--test-size", "8", "--epochs", "1"],
    );
    std::fs::write(run_dir.join("checkpoint/model.safetensors"), b"garbage").unwrap();
    fails(&["eval", "--checkpoint", run_dir.to_str().unwrap()]);
    fails(&[
        "predict",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "x.png",
    ]);
    std::fs::write(run_dir.join("checkpoint/trainer.json"), b"{").unwrap();
    fails(&["train", "--resume", run_dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&d).unwrap();
}
