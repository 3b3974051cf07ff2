//! Downloads against an HTTP server on 127.0.0.1 started by the test (never the real network).
#![cfg(feature = "download")]

mod common;

use perceiver_data::audio::{Fsdd, FsddConfig};
use perceiver_data::download::{
    self, download_file, fetch, sha256_file, sha256_hex, RemoteDataset, RemoteFile, Unpack,
};
use perceiver_data::image::{Cifar10, Mnist, MnistKind};
use perceiver_data::{DataError, Dataset, Split};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves `files` (path -> body) on 127.0.0.1; returns the base address and a request counter.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let resp = match files.get(&path) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&resp);
            let _ = stream.flush();
        }
    });
    (format!("http://{addr}"), count)
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part") || n.ends_with(".extract"))
        .collect()
}

#[test]
fn download_verifies_sha256_and_writes_atomically() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256_hex(&body);
    let (base, count) = serve(HashMap::from([("/data.bin".to_string(), body.clone())]));
    let dir = common::temp_dir("dl");

    let dest = dir.join("data.bin");
    let p = download_file(&format!("{base}/data.bin"), &dest, &digest).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert_eq!(sha256_file(&p).unwrap(), digest);
    let n = count.load(Ordering::SeqCst);
    // Present and valid: no new request.
    download_file(&format!("{base}/data.bin"), &dest, &digest).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), n);

    // Wrong digest: a checksum error, nothing left behind.
    let bad_dest = dir.join("bad.bin");
    let wrong = "0".repeat(64);
    let e = download_file(&format!("{base}/data.bin"), &bad_dest, &wrong).unwrap_err();
    match e {
        DataError::Checksum {
            expected, actual, ..
        } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, digest);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(!bad_dest.exists());
    // 404.
    let e = download_file(&format!("{base}/missing.bin"), &dir.join("m.bin"), &digest).unwrap_err();
    assert!(matches!(e, DataError::Download { .. }), "{e:?}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn fetch_falls_back_to_a_mirror_and_loads() {
    let src = common::temp_dir("dl-mnist-src");
    common::write_mnist(&src, "train", 20, 28, 28, true);
    common::write_mnist(&src, "t10k", 10, 28, 28, true);
    let mut files = HashMap::new();
    let mut remote = Vec::new();
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        let bytes = std::fs::read(src.join(name)).unwrap();
        remote.push(RemoteFile {
            name: name.into(),
            sha256: sha256_hex(&bytes),
        });
        files.insert(format!("/mirror/{name}"), bytes);
    }
    let (base, _) = serve(files);
    let ds = RemoteDataset {
        name: "tiny-mnist".into(),
        base_urls: vec![format!("{base}/dead/"), format!("{base}/mirror/")],
        files: remote,
        unpack: Unpack::None,
    };
    let cache = common::temp_dir("dl-cache");
    let dir = fetch(&ds, &cache).unwrap();
    assert_eq!(dir, cache.join("tiny-mnist"));
    let train = Mnist::load(&dir, Split::Train, MnistKind::Digits).unwrap();
    assert_eq!(train.len(), 20);
    // Cached: works with no server at all.
    let offline = RemoteDataset {
        base_urls: vec!["http://127.0.0.1:9/".into()],
        ..ds
    };
    assert_eq!(fetch(&offline, &cache).unwrap(), dir);
}

fn tar_gz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Write the name raw so hostile paths ("../x") can be tested too.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn cifar_archive_is_verified_and_extracted() {
    let mut entries = vec![(
        "cifar-10-batches-bin/batches.meta.txt",
        b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n".to_vec(),
    )];
    let names: Vec<String> = (1..=5)
        .map(|i| format!("cifar-10-batches-bin/data_batch_{i}.bin"))
        .collect();
    for n in &names {
        entries.push((n.as_str(), common::cifar_bytes(2)));
    }
    entries.push((
        "cifar-10-batches-bin/test_batch.bin",
        common::cifar_bytes(3),
    ));
    entries.push(("../evil.bin", vec![1, 2, 3]));
    let archive = tar_gz(&entries);
    let (base, _) = serve(HashMap::from([(
        "/cifar-10-binary.tar.gz".to_string(),
        archive.clone(),
    )]));
    let ds = RemoteDataset {
        name: "cifar".into(),
        base_urls: vec![format!("{base}/")],
        files: vec![RemoteFile {
            name: "cifar-10-binary.tar.gz".into(),
            sha256: sha256_hex(&archive),
        }],
        unpack: Unpack::Cifar10Tar,
    };
    let cache = common::temp_dir("dl-cifar");
    let dir = fetch(&ds, &cache).unwrap();
    let test = Cifar10::load(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.class_names()[1], "b");
    assert_eq!(Cifar10::load(&dir, Split::Train).unwrap().len(), 10);
    assert!(!cache.join("evil.bin").exists());
    // The same archive with a wrong pin is rejected.
    let bad = RemoteDataset {
        name: "cifar-bad".into(),
        files: vec![RemoteFile {
            name: "cifar-10-binary.tar.gz".into(),
            sha256: "ab".repeat(32),
        }],
        ..ds
    };
    assert!(matches!(
        fetch(&bad, &cache),
        Err(DataError::Checksum { .. })
    ));
    assert!(!cache.join("cifar-bad/cifar-10-binary.tar.gz").exists());
}

#[test]
fn fsdd_archive_is_verified_by_content() {
    let wavs: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            let name = format!("{}_theo_{}.wav", i % 10, i % 7);
            (
                name,
                common::wav_bytes(&vec![i as i16 * 100; 800 + i], 8000, 1),
            )
        })
        .collect();
    let mut listing: Vec<(String, String)> = wavs
        .iter()
        .map(|(n, b)| (n.clone(), sha256_hex(b)))
        .collect();
    listing.sort();
    let text: String = listing.iter().map(|(n, s)| format!("{n}\t{s}\n")).collect();
    let content = sha256_hex(text.as_bytes());
    let paths: Vec<String> = wavs
        .iter()
        .map(|(n, _)| format!("fsdd-1.0.10/recordings/{n}"))
        .collect();
    let mut entries: Vec<(&str, Vec<u8>)> = paths
        .iter()
        .map(|p| p.as_str())
        .zip(wavs.iter().map(|w| w.1.clone()))
        .collect();
    entries.push(("fsdd-1.0.10/README.md", b"readme".to_vec()));
    let archive = tar_gz(&entries);
    let (base, _) = serve(HashMap::from([(
        "/tags/v1.0.10.tar.gz".to_string(),
        archive,
    )]));
    let make = |name: &str, digest: String| RemoteDataset {
        name: name.into(),
        base_urls: vec![format!("{base}/tags/")],
        files: vec![RemoteFile {
            name: "v1.0.10.tar.gz".into(),
            sha256: String::new(),
        }],
        unpack: Unpack::FsddTar {
            content_sha256: digest,
        },
    };
    let cache = common::temp_dir("dl-fsdd");
    let dir = fetch(&make("fsdd", content), &cache).unwrap();
    let ds = Fsdd::open(&dir, FsddConfig::log_mel(Split::Test)).unwrap();
    assert_eq!(ds.len(), 10 - 2); // indices 5 and 6 are train
    assert!(ds.get(0).is_ok());
    let e = fetch(&make("fsdd-bad", "cd".repeat(32)), &cache).unwrap_err();
    assert!(matches!(e, DataError::Checksum { .. }), "{e:?}");
    assert!(!cache.join("fsdd-bad/recordings").exists());
    assert!(leftovers(&cache.join("fsdd-bad")).is_empty());
}

#[test]
fn pinned_digests_match_the_shared_copies() {
    // The shared copies are byte-identical to upstream for these files (see their READMEs;
    // the shared copy of MNIST's train-images .gz is a rebuild, not upstream's bytes, so it is
    // not compared).
    // Every file of `files` in `dir` has its pinned digest.
    let check = |dir: &Path, files: &[RemoteFile]| {
        for f in files {
            let got = sha256_file(&dir.join(&f.name)).unwrap();
            assert_eq!(got, f.sha256, "{}", f.name);
        }
    };
    if let Some(dir) = common::shared("mnist") {
        let mut files = download::mnist().files;
        files.retain(|f| f.name != "train-images-idx3-ubyte.gz");
        check(&dir, &files);
    }
    if let Some(dir) = common::shared("fashion-mnist") {
        check(&dir, &download::fashion_mnist().files);
    }
    if let Some(dir) = common::shared("fsdd") {
        // The FSDD content digest from the recordings themselves (3,000 SHA-256s: ~21 MB).
        let mut listing: Vec<(String, String)> = std::fs::read_dir(dir.join("recordings"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    sha256_file(&p).unwrap(),
                )
            })
            .collect();
        listing.sort();
        let text: String = listing.iter().map(|(n, s)| format!("{n}\t{s}\n")).collect();
        let Unpack::FsddTar { content_sha256 } = download::fsdd().unpack else {
            panic!()
        };
        assert_eq!(sha256_hex(text.as_bytes()), content_sha256);
    }
    assert!(download::by_name("cifar10").is_some());
}
