//! OFF meshes (Object File Format, as used by ModelNet).
//!
//! Header `OFF` (also `COFF`, `NOFF`, ...), then `vertices faces edges`, then one vertex per line
//! (extra columns such as colours are ignored) and one face per line (`n i0 .. i{n-1}`, extra
//! columns ignored). `#` starts a comment. The glued header `OFF490 518 0` found in some
//! ModelNet files is accepted. The declared counts are checked against the file size before
//! anything is allocated.

use super::mesh::Mesh;
use crate::error::{DataError, Result};
use crate::io::{content_lines, parse_token, read_file, MAX_MESH_BYTES};
use std::path::Path;

/// Reads an OFF file.
pub fn read_off(path: &Path) -> Result<Mesh> {
    let bytes = read_file(path, MAX_MESH_BYTES)?;
    parse_off(&bytes, path)
}

fn tokens(line: &[u8]) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        let s = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > s {
            out.push((&line[s..i], s));
        }
    }
    out
}

/// Parses OFF bytes; `path` is only used in errors.
pub fn parse_off(bytes: &[u8], path: &Path) -> Result<Mesh> {
    let mut lines = content_lines(bytes);
    let (first, at) = lines
        .next()
        .ok_or_else(|| DataError::format(path, "header", 0, "empty file"))?;
    let mut toks = tokens(first);
    let (kw, kw_at) = toks[0];
    let kw_str = String::from_utf8_lossy(kw);
    // "OFF" after at most four of the prefix letters C, N, S, T, 4.
    let pos = kw_str
        .find("OFF")
        .filter(|&pos| pos <= 4 && kw_str[..pos].bytes().all(|b| b"CNST4".contains(&b)));
    let Some(pos) = pos else {
        return Err(DataError::format(
            path,
            "header",
            at as u64,
            format!("expected \"OFF\", found {kw_str:?}"),
        ));
    };
    // Counts may follow on the same line, glued to the keyword or not.
    let glued = &kw[pos + 3..];
    let mut count_toks: Vec<(&[u8], usize)> = Vec::new();
    if !glued.is_empty() {
        count_toks.push((glued, at + kw_at + pos + 3));
    }
    count_toks.extend(toks.drain(1..).map(|(t, o)| (t, at + o)));
    // The tokens of the next content line and where it starts, or an error on `field` for a
    // file that ends first (`what` is missing).
    let mut next_line = |field: &str, what: &str| match lines.next() {
        Some((l, lat)) => Ok((tokens(l), lat)),
        None => Err(DataError::format(
            path,
            field,
            bytes.len() as u64,
            format!("truncated: {what}"),
        )),
    };
    if count_toks.is_empty() {
        let (t, lat) = next_line("counts", "no vertex/face counts")?;
        count_toks = t.into_iter().map(|(t, o)| (t, lat + o)).collect();
    }
    if count_toks.len() < 2 {
        let off = count_toks.first().map(|t| t.1).unwrap_or(at);
        return Err(DataError::format(
            path,
            "counts",
            off as u64,
            "expected vertex and face counts",
        ));
    }
    let nv: usize = parse_token(count_toks[0].0, count_toks[0].1, path, "vertex count")?;
    let nf: usize = parse_token(count_toks[1].0, count_toks[1].1, path, "face count")?;
    // A vertex line takes at least 6 bytes ("0 0 0\n"), a face line at least 8.
    let need = nv
        .checked_mul(6)
        .and_then(|a| nf.checked_mul(8).and_then(|b| a.checked_add(b)));
    let body_at = count_toks[1].1;
    if !matches!(need, Some(n) if n <= bytes.len() - body_at) {
        return Err(DataError::format(
            path,
            "counts",
            count_toks[0].1 as u64,
            format!(
                "truncated: header declares {nv} vertices and {nf} faces, more than the {} bytes left can hold",
                bytes.len() - body_at
            ),
        ));
    }
    let mut mesh = Mesh {
        vertices: Vec::with_capacity(nv),
        triangles: Vec::with_capacity(nf),
    };
    for i in 0..nv {
        let field = format!("vertex {i}");
        let (t, lat) = next_line(&field, "missing vertex line")?;
        if t.len() < 3 {
            return Err(DataError::format(
                path,
                &field,
                lat as u64,
                format!("{} coordinates, expected 3", t.len()),
            ));
        }
        let mut v = [0f32; 3];
        for k in 0..3 {
            let x: f32 = parse_token(t[k].0, lat + t[k].1, path, &field)?;
            if !x.is_finite() {
                return Err(DataError::format(
                    path,
                    &field,
                    (lat + t[k].1) as u64,
                    format!("coordinate {x} of vertex {i} is not finite"),
                ));
            }
            v[k] = x;
        }
        mesh.vertices.push(v);
    }
    let mut idx: Vec<u32> = Vec::new();
    for i in 0..nf {
        let field = format!("face {i}");
        let (t, lat) = next_line(&field, "missing face line")?;
        let n: usize = parse_token(t[0].0, lat + t[0].1, path, &field)?;
        if n < 3 || n >= t.len() {
            return Err(DataError::format(
                path,
                &field,
                lat as u64,
                format!(
                    "face of {n} vertices with {} indices on the line",
                    t.len() - 1
                ),
            ));
        }
        idx.clear();
        for k in 1..=n {
            let j: u32 = parse_token(t[k].0, lat + t[k].1, path, &field)?;
            if j as usize >= nv {
                return Err(DataError::format(
                    path,
                    &field,
                    (lat + t[k].1) as u64,
                    format!("vertex index {j} out of range ({nv} vertices)"),
                ));
            }
            idx.push(j);
        }
        mesh.push_polygon(&idx);
    }
    Ok(mesh)
}
