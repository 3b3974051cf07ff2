//! Optional download of MNIST, Fashion-MNIST, CIFAR-10 and FSDD into a cache directory, with
//! SHA-256 verification and atomic writes (a temporary file in the same directory, renamed into
//! place only after its digest matched).
//!
//! The canonical addresses are tried first, then well-known mirrors. MNIST's and Fashion-MNIST's
//! canonical hosts serve plain HTTP; CIFAR-10 and FSDD need the `https` feature (rustls).
//! FSDD is fetched as the GitHub tarball of tag v1.0.10; because GitHub may regenerate tarballs,
//! it is verified by *content*: the SHA-256 of the sorted `name<TAB>sha256` list of the 3,000
//! extracted recordings.

use crate::error::{DataError, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest decompressed size of a downloaded `.tar.gz` archive (4 GiB); extraction stops with
/// an error past it.
pub const MAX_TAR_BYTES: u64 = 4 << 30;

/// Largest file extracted from an archive (512 MiB).
pub const MAX_TAR_ENTRY_BYTES: u64 = 512 << 20;

/// A reader that fails with an error once more than `limit` bytes have come through it (a
/// decompression bomb stops there instead of filling the disk or the memory).
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let cap = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let len = buf.len().min(cap);
        let n = self.inner.read(&mut buf[..len])?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "decompresses to more than {} bytes",
                self.limit
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// One file of a remote dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, appended to each base address.
    pub name: String,
    /// Expected SHA-256 (lower-case hex) of the file as downloaded.
    pub sha256: String,
}

/// What to do with the downloaded files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// Keep them as they are (MNIST, Fashion-MNIST: the loaders read `.gz` directly).
    None,
    /// Extract `cifar-10-batches-bin/*` from the (single) tar.gz.
    Cifar10Tar,
    /// Extract `*/recordings/*.wav` from the (single) tar.gz and check the content digest
    /// (SHA-256 of the sorted `name<TAB>sha256\n` lines of the recordings).
    FsddTar {
        /// Expected content digest.
        content_sha256: String,
    },
}

/// A downloadable dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDataset {
    /// Sub-folder of the cache directory.
    pub name: String,
    /// Base addresses (ending in `/`), tried in order: canonical first, then mirrors.
    pub base_urls: Vec<String>,
    /// The files.
    pub files: Vec<RemoteFile>,
    /// Post-processing.
    pub unpack: Unpack,
}

fn files(list: &[(&str, &str)]) -> Vec<RemoteFile> {
    list.iter()
        .map(|(n, s)| RemoteFile {
            name: n.to_string(),
            sha256: s.to_string(),
        })
        .collect()
}

/// MNIST from <http://yann.lecun.com/exdb/mnist/> (mirrors: the PyTorch and TensorFlow copies).
pub fn mnist() -> RemoteDataset {
    RemoteDataset {
        name: "mnist".into(),
        base_urls: vec![
            "http://yann.lecun.com/exdb/mnist/".into(),
            "https://ossci-datasets.s3.amazonaws.com/mnist/".into(),
            "https://storage.googleapis.com/cvdf-datasets/mnist/".into(),
        ],
        files: files(&[
            (
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ]),
        unpack: Unpack::None,
    }
}

/// Fashion-MNIST from Zalando's bucket (mirror: the GitHub repository).
pub fn fashion_mnist() -> RemoteDataset {
    RemoteDataset {
        name: "fashion-mnist".into(),
        base_urls: vec![
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/".into(),
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
                .into(),
        ],
        files: files(&[
            (
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ]),
        unpack: Unpack::None,
    }
}

/// CIFAR-10 binary version from <https://www.cs.toronto.edu/~kriz/>.
pub fn cifar10() -> RemoteDataset {
    RemoteDataset {
        name: "cifar10".into(),
        base_urls: vec!["https://www.cs.toronto.edu/~kriz/".into()],
        files: files(&[(
            "cifar-10-binary.tar.gz",
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        )]),
        unpack: Unpack::Cifar10Tar,
    }
}

/// Free Spoken Digit Dataset v1.0.10 from GitHub.
pub fn fsdd() -> RemoteDataset {
    RemoteDataset {
        name: "fsdd".into(),
        base_urls: vec![
            "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/".into(),
        ],
        // The tarball itself is not pinned (GitHub can regenerate it): an empty digest means
        // "verify the content instead".
        files: files(&[("v1.0.10.tar.gz", "")]),
        unpack: Unpack::FsddTar {
            content_sha256: "8dac6ce326e419e9fcfadedf2e4a67d6c08a40968c34bb8fa2b4e27d74753d5a"
                .into(),
        },
    }
}

/// The dataset called `name` (`mnist`, `fashion-mnist`, `cifar10`, `fsdd`).
pub fn by_name(name: &str) -> Option<RemoteDataset> {
    match name {
        "mnist" => Some(mnist()),
        "fashion-mnist" | "fashion_mnist" => Some(fashion_mnist()),
        "cifar10" | "cifar-10" => Some(cifar10()),
        "fsdd" => Some(fsdd()),
        _ => None,
    }
}

/// The cache directory: `$PERCEIVER_CACHE`, else `$XDG_CACHE_HOME/perceiver`, else
/// `$HOME/.cache/perceiver`, else `.cache/perceiver`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PERCEIVER_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("perceiver");
    }
    if let Some(p) = std::env::var_os("HOME") {
        return PathBuf::from(p).join(".cache").join("perceiver");
    }
    PathBuf::from(".cache").join("perceiver")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = perceiver_io::open_regular(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "127.0.0.1" || host == "localhost" || rest.starts_with("[::1]")
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dest.with_file_name(format!(".{name}.{}.{nonce}.part", std::process::id()))
}

/// Downloads `url` to `dest`, verifying the SHA-256 (`sha256` empty: no check). If `dest`
/// already exists with the right digest, nothing is fetched. The body is streamed to a
/// temporary file next to `dest` and renamed into place only when the digest matches; on a
/// mismatch the temporary file is removed and [`DataError::Checksum`] returned.
pub fn download_file(url: &str, dest: &Path, sha256: &str) -> Result<PathBuf> {
    let want = sha256.to_ascii_lowercase();
    if dest.is_file() && !want.is_empty() && sha256_file(dest)? == want {
        return Ok(dest.to_path_buf());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = temp_path(dest);
    let result = fetch_to(url, &tmp).and_then(|got| {
        if !want.is_empty() && got != want {
            Err(DataError::Checksum {
                path: dest.to_path_buf(),
                expected: want.clone(),
                actual: got,
            })
        } else {
            std::fs::rename(&tmp, dest).map_err(|e| DataError::io(dest, e))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|_| dest.to_path_buf())
}

/// GETs `url` into `tmp`, returning the SHA-256 of the body.
fn fetch_to(url: &str, tmp: &Path) -> Result<String> {
    let dl = |msg: String| DataError::Download {
        url: url.to_string(),
        msg,
    };
    let proxy = if is_loopback(url) {
        None
    } else {
        ureq::Proxy::try_from_env()
    };
    let config = ureq::Agent::config_builder()
        .proxy(proxy)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let resp = agent.get(url).call().map_err(|e| dl(e.to_string()))?;
    let mut reader = resp.into_body().into_reader();
    // A new file: nothing planted at the temporary name is written through.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| DataError::io(tmp, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| dl(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp, e))?;
    }
    file.sync_all().map_err(|e| DataError::io(tmp, e))?;
    Ok(hex(&h.finalize()))
}

/// Downloads (if needed) and unpacks `ds` into `cache_dir/<name>` and returns that directory,
/// ready for the matching loader (`Mnist::load`, `Cifar10::load`, `Fsdd::open`). Base addresses
/// are tried in order; the error of the last one is returned if all fail.
pub fn fetch(ds: &RemoteDataset, cache_dir: &Path) -> Result<PathBuf> {
    let dir = cache_dir.join(&ds.name);
    let marker = dir.join(".complete");
    if marker.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let mut downloaded = Vec::new();
    for f in &ds.files {
        let dest = dir.join(&f.name);
        let mut last = None;
        for base in &ds.base_urls {
            match download_file(&format!("{base}{}", f.name), &dest, &f.sha256) {
                Ok(p) => {
                    last = None;
                    downloaded.push(p);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    match &ds.unpack {
        Unpack::None => {}
        Unpack::Cifar10Tar => {
            for a in &downloaded {
                extract(a, &dir, "cifar-10-batches-bin", |_| true, None)?;
            }
        }
        Unpack::FsddTar { content_sha256 } => {
            for a in &downloaded {
                extract(
                    a,
                    &dir,
                    "recordings",
                    |n| n.ends_with(".wav"),
                    Some(content_sha256.as_str()),
                )?;
            }
        }
    }
    std::fs::write(&marker, b"ok\n").map_err(|e| DataError::io(&marker, e))?;
    Ok(dir)
}

/// Extracts the regular files whose parent folder is called `folder` (and whose name passes
/// `keep`) from a tar.gz into `dir/folder/`, via a temporary folder renamed at the end. The
/// archive is inflated to at most [`MAX_TAR_BYTES`], each file to at most
/// [`MAX_TAR_ENTRY_BYTES`]. With
/// `content_sha256`, checks the digest of the sorted `name<TAB>sha256` list first.
fn extract(
    archive: &Path,
    dir: &Path,
    folder: &str,
    keep: impl Fn(&str) -> bool,
    content_sha256: Option<&str>,
) -> Result<()> {
    let tmp = dir.join(format!(".{folder}.extract"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let run = || -> Result<()> {
        let file = perceiver_io::open_regular(archive)?;
        let gz = Bounded {
            inner: flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)),
            left: MAX_TAR_BYTES,
            limit: MAX_TAR_BYTES,
        };
        let mut tar = tar::Archive::new(gz);
        let bad = |e: std::io::Error| DataError::decode(archive, format!("tar.gz: {e}"));
        let mut listing: Vec<(String, String)> = Vec::new();
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(bad)?.into_owned();
            let parent = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if parent != Some(folder) || !keep(&name) || name.starts_with('.') {
                continue;
            }
            let size = entry.size();
            if size > MAX_TAR_ENTRY_BYTES {
                return Err(DataError::decode(
                    archive,
                    format!(
                        "tar.gz: {} declares {size} bytes, more than the {MAX_TAR_ENTRY_BYTES} accepted",
                        path.display()
                    ),
                ));
            }
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_TAR_ENTRY_BYTES)
                .read_to_end(&mut bytes)
                .map_err(bad)?;
            listing.push((name.clone(), sha256_hex(&bytes)));
            let out = tmp.join(&name);
            std::fs::write(&out, &bytes).map_err(|e| DataError::io(&out, e))?;
        }
        if listing.is_empty() {
            return Err(DataError::decode(
                archive,
                format!("no {folder}/ files in the archive"),
            ));
        }
        if let Some(want) = content_sha256 {
            listing.sort();
            let text: String = listing.iter().map(|(n, s)| format!("{n}\t{s}\n")).collect();
            let got = sha256_hex(text.as_bytes());
            if got != want {
                return Err(DataError::Checksum {
                    path: archive.to_path_buf(),
                    expected: want.to_string(),
                    actual: got,
                });
            }
        }
        let dest = dir.join(folder);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(|e| DataError::io(&dest, e))
    };
    let r = run();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reader_stops_past_its_limit() {
        let data = vec![7u8; 1000];
        let mut r = Bounded {
            inner: &data[..],
            left: 100,
            limit: 100,
        };
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.to_string(), "decompresses to more than 100 bytes");
        assert!(out.len() <= 100, "{} bytes came through", out.len());
        // Exactly the limit passes.
        let mut r = Bounded {
            inner: &data[..100],
            left: 100,
            limit: 100,
        };
        let mut out = Vec::new();
        assert_eq!(r.read_to_end(&mut out).unwrap(), 100);
    }
}
