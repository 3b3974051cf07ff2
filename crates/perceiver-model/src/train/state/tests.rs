//! Hostile conditions around the training state: foreign files where the state goes,
//! non-finite values, special files in place of the state's files, absurd configurations.

use super::*;
use crate::train::tests::tiny;
use crate::train::TrainBatch;
use perceiver_nn::optim::{Adam, AdamConfig, Constant};
use std::time::{Duration, Instant};

fn adam() -> Box<dyn Optimizer> {
    Box::new(Adam::new(AdamConfig::default()).unwrap())
}

fn trainer() -> Trainer {
    let model = Perceiver::new(tiny(), &mut Rng::new(0)).unwrap();
    let mut t = Trainer::new(
        model,
        adam(),
        Box::new(Constant(1e-3)),
        TrainerConfig::default(),
        Rng::new(1),
    );
    let b = TrainBatch::new(Tensor::randn(&[2, 4, 4, 1], &mut Rng::new(2)), vec![0, 1]);
    t.step(&b).unwrap();
    t
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("perceiver-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load(dir: &Path) -> Result<(Trainer, serde_json::Value)> {
    Trainer::load_state(
        dir,
        adam(),
        Box::new(Constant(1e-3)),
        TrainerConfig::default(),
    )
}

/// Every file and directory under `root` with its bytes (directories: empty), sorted.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            out.push((p, Vec::new()));
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            out.push((p, target.to_string_lossy().as_bytes().to_vec()));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn non_finite_state_is_refused_and_the_disk_is_unchanged() {
    let root = scratch("nonfinite");
    let dir = root.join("ckpt");
    let t = trainer();
    t.save_state(&dir, &1).unwrap();
    let before = snapshot(&root);
    // A step that diverged: one weight became infinite.
    let p = t.model().params().get("latents").unwrap();
    p.update(|v| v[3] = f32::INFINITY);
    let e = t.save_state(&dir, &2).unwrap_err();
    assert!(
        matches!(&e, TrainError::NonFiniteState { tensor } if tensor == "latents"),
        "{e}"
    );
    assert_eq!(snapshot(&root), before);
    let (back, extra) = load(&dir).unwrap();
    assert_eq!(extra, 1);
    assert_eq!(back.steps(), 1);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn foreign_content_is_never_removed_and_the_good_state_stays() {
    let t = trainer();
    type Plant = fn(&Path, &Path);
    let cases: [(&str, &str, Plant); 6] = [
        ("old-folder", "ckpt.old", |p, _| {
            std::fs::create_dir(p).unwrap();
            std::fs::write(p.join("notes.txt"), "mine").unwrap();
        }),
        ("new-folder", "ckpt.new", |p, _| {
            std::fs::create_dir(p).unwrap();
            std::fs::write(p.join("model.safetensors"), "x").unwrap();
            std::fs::write(p.join("photo.jpg"), "mine").unwrap();
        }),
        ("old-file", "ckpt.old", |p, _| {
            std::fs::write(p, "mine").unwrap()
        }),
        ("new-symlink", "ckpt.new", |p, root| {
            std::fs::create_dir(root.join("elsewhere")).unwrap();
            std::fs::write(root.join("elsewhere/data"), "mine").unwrap();
            std::os::unix::fs::symlink(root.join("elsewhere"), p).unwrap();
        }),
        ("dir-extra", "ckpt", |p, _| {
            std::fs::write(p.join("README"), "mine").unwrap();
        }),
        ("dir-subfolder", "ckpt", |p, _| {
            std::fs::create_dir(p.join("runs")).unwrap();
        }),
    ];
    for (name, at, plant) in cases {
        let root = scratch(name);
        let dir = root.join("ckpt");
        t.save_state(&dir, &1).unwrap();
        let path = root.join(at);
        plant(&path, &root);
        let before = snapshot(&root);
        let e = t.save_state(&dir, &2).unwrap_err();
        assert!(matches!(e, TrainError::File(_)), "{name}: {e}");
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "{name}: {e}"
        );
        assert_eq!(snapshot(&root), before, "{name}");
        let (_, extra) = load(&dir).unwrap();
        assert_eq!(extra, 1, "{name}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn a_user_file_at_the_state_path_is_left_alone() {
    let root = scratch("userfile");
    let dir = root.join("ckpt");
    std::fs::write(&dir, "my thesis").unwrap();
    let e = trainer().save_state(&dir, &1).unwrap_err();
    assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&dir).unwrap(), b"my thesis");
    assert_eq!(snapshot(&root).len(), 2, "{:?}", snapshot(&root));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn leftovers_of_an_interrupted_save_are_cleaned_up() {
    let root = scratch("leftovers");
    let dir = root.join("ckpt");
    let t = trainer();
    t.save_state(&dir, &1).unwrap();
    // A crash after `<dir>` moved to `<dir>.old`, with a half-written `<dir>.new`.
    std::fs::rename(&dir, root.join("ckpt.old")).unwrap();
    std::fs::create_dir(root.join("ckpt.new")).unwrap();
    std::fs::write(root.join("ckpt.new/config.json"), "{").unwrap();
    assert_eq!(load(&dir).unwrap().1, 1);
    t.save_state(&dir, &2).unwrap();
    let names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ckpt"]);
    assert_eq!(load(&dir).unwrap().1, 2);
    // A trailing separator names the same directory; its siblings stay beside it.
    t.save_state(root.join("ckpt/"), &3).unwrap();
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    assert_eq!(load(&dir).unwrap().1, 3);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `f` on another thread; panics if it takes more than 20 s (a read that blocks).
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the call blocked")
}

#[test]
fn special_files_in_place_of_the_state_files_fail_at_once_naming_them() {
    let t = trainer();
    for file in STATE_FILES {
        for special in ["/dev/zero", "fifo"] {
            let root = scratch(&format!("special-{file}-{}", special.len()));
            let dir = root.join("ckpt");
            t.save_state(&dir, &1).unwrap();
            let path = dir.join(file);
            std::fs::remove_file(&path).unwrap();
            if special == "fifo" {
                let made = std::process::Command::new("mkfifo").arg(&path).status();
                if !made.is_ok_and(|s| s.success()) {
                    std::fs::remove_dir_all(&root).unwrap();
                    continue;
                }
            } else {
                std::os::unix::fs::symlink(special, &path).unwrap();
            }
            let start = Instant::now();
            let d = dir.clone();
            let e = within_seconds(move || load(&d).map(|_| ()).unwrap_err().to_string());
            assert!(start.elapsed() < Duration::from_secs(20));
            assert!(
                e.contains(&path.display().to_string()),
                "{file} {special}: {e}"
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
}

#[test]
fn an_absurd_config_next_to_small_weights_is_refused_before_allocating() {
    let root = scratch("absurd");
    let dir = root.join("ckpt");
    trainer().save_state(&dir, &1).unwrap();
    let cpath = dir.join(CONFIG_FILE);
    let json = std::fs::read_to_string(&cpath).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["num_latents"] = serde_json::json!(1_000_000_000u64);
    std::fs::write(&cpath, serde_json::to_string(&v).unwrap()).unwrap();
    let start = Instant::now();
    let e = load(&dir).map(|_| ()).unwrap_err().to_string();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(e.contains(&cpath.display().to_string()), "{e}");
    assert!(e.contains("num_latents"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn counters_never_wrap() {
    let mut t = trainer();
    t.step = MAX_COUNTER;
    t.epoch = MAX_COUNTER;
    let b = TrainBatch::new(Tensor::randn(&[2, 4, 4, 1], &mut Rng::new(2)), vec![0, 1]);
    let before = t.model().params().get("latents").unwrap().value().to_vec();
    let e = t.step(&b).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::CounterOverflow {
                counter: "step",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(t.steps(), MAX_COUNTER);
    let after = t.model().params().get("latents").unwrap().value().to_vec();
    assert_eq!(before, after);
    assert!(t.finish_epoch().is_err());
    assert_eq!(t.epoch(), MAX_COUNTER);

    // A trainer.json with a counter past the limit is refused, naming the file and field.
    let root = scratch("counters");
    let dir = root.join("ckpt");
    trainer().save_state(&dir, &1).unwrap();
    let tpath = dir.join(TRAINER_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tpath).unwrap()).unwrap();
    v["step"] = serde_json::json!(u64::MAX);
    std::fs::write(&tpath, serde_json::to_string(&v).unwrap()).unwrap();
    let e = load(&dir).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains(&tpath.display().to_string()) && e.contains("`step`"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
