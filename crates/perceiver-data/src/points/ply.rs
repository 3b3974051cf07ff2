//! PLY meshes and point clouds: ASCII, binary little-endian and binary big-endian.
//!
//! The header lists elements (`element vertex 100`) and their properties (`property float x`,
//! `property list uchar int vertex_indices`). The reader keeps `x y z` of the `vertex` element
//! and the index list of the `face` element (fan-triangulated) and skips everything else. Every
//! element count is checked against the bytes left in the file before anything is allocated.

use super::mesh::Mesh;
use crate::error::{DataError, Result};
use crate::io::{parse_token, read_file, Tokens, MAX_MESH_BYTES};
use std::path::Path;

/// Reads a PLY file.
pub fn read_ply(path: &Path) -> Result<Mesh> {
    let bytes = read_file(path, MAX_MESH_BYTES)?;
    parse_ply(&bytes, path)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        Some(match s {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }

    fn is_int(self) -> bool {
        !matches!(self, Scalar::F32 | Scalar::F64)
    }
}

#[derive(Clone, Debug)]
enum Prop {
    Scalar(Scalar, String),
    List(Scalar, Scalar, String),
}

#[derive(Clone, Debug)]
struct Element {
    name: String,
    count: usize,
    props: Vec<Prop>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Ascii,
    BinaryLe,
    BinaryBe,
}

/// A source of property values (ASCII tokens or binary scalars).
trait Source {
    fn scalar(&mut self, ty: Scalar, field: &str) -> Result<f64>;
    fn pos(&self) -> usize;
    fn remaining(&self) -> usize;
    /// The fewest bytes a value of type `ty` can take.
    fn min_size(&self, ty: Scalar) -> usize;
}

struct Binary<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
    path: &'a Path,
}

impl Source for Binary<'_> {
    fn scalar(&mut self, ty: Scalar, field: &str) -> Result<f64> {
        let n = ty.size();
        if self.data.len() - self.pos < n {
            return Err(DataError::format(
                self.path,
                field,
                self.pos as u64,
                format!(
                    "truncated: needs {n} bytes, only {} left",
                    self.data.len() - self.pos
                ),
            ));
        }
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        if self.big_endian {
            b[..n].reverse();
        }
        self.pos += n;
        Ok(match ty {
            Scalar::I8 => b[0] as i8 as f64,
            Scalar::U8 => b[0] as f64,
            Scalar::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            Scalar::U16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            Scalar::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Scalar::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Scalar::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Scalar::F64 => f64::from_le_bytes(b),
        })
    }
    fn pos(&self) -> usize {
        self.pos
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn min_size(&self, ty: Scalar) -> usize {
        ty.size()
    }
}

struct Ascii<'a> {
    toks: Tokens<'a>,
    len: usize,
    path: &'a Path,
}

impl Source for Ascii<'_> {
    fn scalar(&mut self, ty: Scalar, field: &str) -> Result<f64> {
        let (t, at) = self.toks.next_token().ok_or_else(|| {
            DataError::format(
                self.path,
                field,
                self.len as u64,
                "truncated: missing value",
            )
        })?;
        let v: f64 = parse_token(t, at, self.path, field)?;
        if ty.is_int() && v.fract() != 0.0 {
            return Err(DataError::format(
                self.path,
                field,
                at as u64,
                format!("{v} is not an integer"),
            ));
        }
        Ok(v)
    }
    fn pos(&self) -> usize {
        self.toks.pos()
    }
    fn remaining(&self) -> usize {
        self.len - self.toks.pos()
    }
    fn min_size(&self, _ty: Scalar) -> usize {
        1
    }
}

fn header_err(path: &Path, offset: usize, msg: impl Into<String>) -> DataError {
    DataError::format(path, "header", offset as u64, msg)
}

/// Parses PLY bytes; `path` is only used in errors.
pub fn parse_ply(bytes: &[u8], path: &Path) -> Result<Mesh> {
    if !bytes.starts_with(b"ply") {
        return Err(header_err(path, 0, "not a PLY file (expected \"ply\")"));
    }
    // Header lines up to "end_header".
    let mut pos = 0usize;
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    let mut body = None;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|e| pos + e)
            .ok_or_else(|| header_err(path, pos, "truncated: no \"end_header\" line"))?;
        let line_at = pos;
        let line = String::from_utf8_lossy(&bytes[pos..end]);
        pos = end + 1;
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        match words.as_slice() {
            ["ply"] | [] => {}
            ["comment", ..] | ["obj_info", ..] => {}
            ["format", f, _version] => {
                format = Some(match *f {
                    "ascii" => Format::Ascii,
                    "binary_little_endian" => Format::BinaryLe,
                    "binary_big_endian" => Format::BinaryBe,
                    other => {
                        return Err(header_err(
                            path,
                            line_at,
                            format!("unknown format {other:?}"),
                        ))
                    }
                })
            }
            ["element", name, count] => {
                let count: usize = count.parse().map_err(|_| {
                    header_err(path, line_at, format!("bad element count {count:?}"))
                })?;
                elements.push(Element {
                    name: name.to_string(),
                    count,
                    props: Vec::new(),
                });
            }
            ["property", "list", ct, it, name] => {
                let (Some(ct), Some(it)) = (Scalar::parse(ct), Scalar::parse(it)) else {
                    return Err(header_err(
                        path,
                        line_at,
                        format!("unknown list types in {line:?}"),
                    ));
                };
                if !ct.is_int() || !it.is_int() {
                    return Err(header_err(
                        path,
                        line_at,
                        "list count and index types must be integers",
                    ));
                }
                elements
                    .last_mut()
                    .ok_or_else(|| header_err(path, line_at, "property before any element"))?
                    .props
                    .push(Prop::List(ct, it, name.to_string()));
            }
            ["property", ty, name] => {
                let ty = Scalar::parse(ty).ok_or_else(|| {
                    header_err(path, line_at, format!("unknown property type {ty:?}"))
                })?;
                elements
                    .last_mut()
                    .ok_or_else(|| header_err(path, line_at, "property before any element"))?
                    .props
                    .push(Prop::Scalar(ty, name.to_string()));
            }
            ["end_header"] => {
                body = Some(pos);
                break;
            }
            _ => {
                return Err(header_err(
                    path,
                    line_at,
                    format!("unrecognised header line {line:?}"),
                ))
            }
        }
    }
    let body =
        body.ok_or_else(|| header_err(path, bytes.len(), "truncated: no \"end_header\" line"))?;
    let format = format.ok_or_else(|| header_err(path, 0, "no \"format\" line"))?;
    match format {
        Format::Ascii => {
            let mut src = Ascii {
                toks: Tokens::new(bytes, body),
                len: bytes.len(),
                path,
            };
            read_body(&mut src, &elements, path)
        }
        Format::BinaryLe | Format::BinaryBe => {
            let mut src = Binary {
                data: bytes,
                pos: body,
                big_endian: format == Format::BinaryBe,
                path,
            };
            read_body(&mut src, &elements, path)
        }
    }
}

fn read_body(src: &mut dyn Source, elements: &[Element], path: &Path) -> Result<Mesh> {
    let mut mesh = Mesh::default();
    let mut have_vertex = false;
    let mut idx: Vec<u32> = Vec::new();
    let mut faces: Vec<(Vec<u32>, usize)> = Vec::new();
    for el in elements {
        // Minimum bytes per instance: binary sizes, or one byte per ASCII value.
        let min: usize = el
            .props
            .iter()
            .map(|p| match p {
                Prop::Scalar(t, _) => src.min_size(*t),
                Prop::List(c, _, _) => src.min_size(*c),
            })
            .sum::<usize>()
            .max(1);
        let fits = el
            .count
            .checked_mul(min)
            .is_some_and(|n| n <= src.remaining());
        if !fits && !el.props.is_empty() {
            return Err(DataError::format(
                path,
                format!("element {:?}", el.name),
                src.pos() as u64,
                format!(
                    "truncated: header declares {} {} elements, more than the {} bytes left can hold",
                    el.count,
                    el.name,
                    src.remaining()
                ),
            ));
        }
        let is_vertex = el.name == "vertex";
        let is_face = el.name == "face";
        let find = |n: &str| {
            el.props
                .iter()
                .position(|p| matches!(p, Prop::Scalar(_, name) if name == n))
        };
        let (xi, yi, zi) = (find("x"), find("y"), find("z"));
        if is_vertex {
            if xi.is_none() || yi.is_none() || zi.is_none() {
                return Err(DataError::format(
                    path,
                    "header",
                    0,
                    "vertex element lacks x, y or z",
                ));
            }
            have_vertex = true;
            mesh.vertices.reserve(el.count);
        }
        for i in 0..el.count {
            let mut v = [0f32; 3];
            for (pi, p) in el.props.iter().enumerate() {
                match p {
                    Prop::Scalar(t, name) => {
                        let field = format!("{} {i} {name}", el.name);
                        let x = src.scalar(*t, &field)?;
                        if is_vertex {
                            for (k, want) in [xi, yi, zi].iter().enumerate() {
                                if *want == Some(pi) {
                                    if !x.is_finite() || x.abs() > f32::MAX as f64 {
                                        return Err(DataError::format(
                                            path,
                                            &field,
                                            src.pos() as u64,
                                            format!("coordinate {x} of vertex {i} is not finite"),
                                        ));
                                    }
                                    v[k] = x as f32;
                                }
                            }
                        }
                    }
                    Prop::List(ct, it, name) => {
                        let field = format!("{} {i} {name}", el.name);
                        let at = src.pos();
                        let n = src.scalar(*ct, &field)?;
                        if n < 0.0 || n * (src.min_size(*it) as f64) > src.remaining() as f64 {
                            return Err(DataError::format(
                                path,
                                &field,
                                at as u64,
                                format!(
                                    "list of {n} entries does not fit in the {} bytes left",
                                    src.remaining()
                                ),
                            ));
                        }
                        let n = n as usize;
                        let keep = is_face && (name == "vertex_indices" || name == "vertex_index");
                        idx.clear();
                        for _ in 0..n {
                            let j = src.scalar(*it, &field)?;
                            if keep {
                                if j < 0.0 || j > u32::MAX as f64 {
                                    return Err(DataError::format(
                                        path,
                                        &field,
                                        src.pos() as u64,
                                        format!("vertex index {j} out of range"),
                                    ));
                                }
                                idx.push(j as u32);
                            }
                        }
                        if keep {
                            if n < 3 {
                                return Err(DataError::format(
                                    path,
                                    &field,
                                    at as u64,
                                    format!("face with {n} vertices"),
                                ));
                            }
                            faces.push((idx.clone(), at));
                        }
                    }
                }
            }
            if is_vertex {
                mesh.vertices.push(v);
            }
        }
    }
    if !have_vertex {
        return Err(DataError::format(path, "header", 0, "no vertex element"));
    }
    let nv = mesh.vertices.len();
    for (k, (f, at)) in faces.iter().enumerate() {
        if let Some(&bad) = f.iter().find(|&&j| j as usize >= nv) {
            return Err(DataError::format(
                path,
                format!("face {k} vertex_indices"),
                *at as u64,
                format!("vertex index {bad} out of range ({nv} vertices)"),
            ));
        }
        mesh.push_polygon(f);
    }
    Ok(mesh)
}
