use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("perceiver-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let d = scratch("fifo");
    let fifo = d.join("f");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = read_bounded(&fifo, 100).unwrap_err();
    assert!(
        matches!(e, FileError::NotRegular { kind: "a FIFO", .. }),
        "{e}"
    );
    let zero = d.join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let e = read_bounded(&zero, 1 << 30).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    assert!(matches!(
        open_regular(&d),
        Err(FileError::NotRegular {
            kind: "a directory",
            ..
        })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reads_are_bounded_and_missing_files_named() {
    let d = scratch("bounded");
    let p = d.join("x");
    std::fs::write(&p, vec![7u8; 100]).unwrap();
    assert_eq!(read_bounded(&p, 100).unwrap().len(), 100);
    let e = read_bounded(&p, 99).unwrap_err();
    assert!(matches!(
        e,
        FileError::TooLarge {
            size: 100,
            limit: 99,
            ..
        }
    ));
    let e = read_bounded(d.join("missing"), 10).unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("missing"), "{e}");
    std::fs::write(&p, [0xff, 0xfe]).unwrap();
    assert!(read_string_bounded(&p, 10).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

#[cfg(unix)]
#[test]
fn atomic_writes_replace_a_symlink_instead_of_following_it() {
    let d = scratch("symlink");
    let outside = d.join("outside.txt");
    std::fs::write(&outside, "keep").unwrap();
    let link = d.join("metrics.jsonl");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    assert!(matches!(
        append_no_follow(&link),
        Err(FileError::Symlink { .. })
    ));
    write_bytes_atomic(&link, b"new").unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
    let mut f = append_no_follow(&link).unwrap();
    f.write_all(b"+").unwrap();
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "new+");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn failed_atomic_write_leaves_the_old_file() {
    let d = scratch("failed");
    let p = d.join("a");
    std::fs::write(&p, "old").unwrap();
    let e = write_atomic(&p, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
    assert!(e.to_string().contains("disk full"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn only_owned_directories_are_removed() {
    let d = scratch("owned");
    let ckpt = d.join("checkpoint");
    std::fs::create_dir(&ckpt).unwrap();
    std::fs::write(ckpt.join("model.safetensors"), "m").unwrap();
    std::fs::write(ckpt.join("notes.txt"), "user").unwrap();
    let e = remove_owned_dir(&ckpt, &["model.safetensors", "config.json"]).unwrap_err();
    assert!(matches!(&e, FileError::Foreign { entries, .. } if entries == &["notes.txt"]));
    assert!(ckpt.join("model.safetensors").exists() && ckpt.join("notes.txt").exists());
    std::fs::remove_file(ckpt.join("notes.txt")).unwrap();
    std::fs::write(ckpt.join("config.json.tmp.1.0"), "t").unwrap();
    remove_owned_dir(&ckpt, &["model.safetensors", "config.json"]).unwrap();
    assert!(!ckpt.exists());
    remove_owned_dir(&ckpt, &["x"]).unwrap();
    std::fs::write(&ckpt, "a user's file").unwrap();
    assert!(remove_owned_dir(&ckpt, &["x"]).is_err());
    assert!(ckpt.is_file());
    std::fs::remove_dir_all(&d).unwrap();
}
