//! The `torch.save` reader: hand-made archives (pickle opcodes written byte by byte, zipped with
//! the `zip` crate) for values and layouts (here), every refusal (`refusals.rs`), and the real
//! Hugging Face checkpoint of the shared golden material when it is present (`hf.rs`).

mod hf;
mod refusals;

use perceiver_nn::io::decode_pytorch_bin;
use perceiver_tensor::{Error, Tensor};
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

// ---- pickle fragments -------------------------------------------------------------------------

const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const REDUCE: u8 = b'R';
const STOP: u8 = b'.';

fn global(module: &str, name: &str) -> Vec<u8> {
    [b"c", module.as_bytes(), b"\n", name.as_bytes(), b"\n"].concat()
}

fn string(s: &str) -> Vec<u8> {
    [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
}

fn int(i: i64) -> Vec<u8> {
    match i {
        0..=255 => vec![b'K', i as u8],
        256..=65535 => [&[b'M'][..], &(i as u16).to_le_bytes()].concat(),
        _ if i32::try_from(i).is_ok() => [&[b'J'][..], &(i as i32).to_le_bytes()].concat(),
        _ => [&[0x8a, 8][..], &i.to_le_bytes()].concat(),
    }
}

fn int_tuple(xs: &[i64]) -> Vec<u8> {
    let mut v = vec![MARK];
    for &x in xs {
        v.extend(int(x));
    }
    v.push(TUPLE);
    v
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
fn tensor(
    storage: &str,
    key: &str,
    numel: i64,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Vec<u8> {
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    v.push(MARK);
    v.push(MARK);
    v.extend(string("storage"));
    v.extend(global("torch", storage));
    v.extend(string(key));
    v.extend(string("cpu"));
    v.extend(int(numel));
    v.push(TUPLE);
    v.push(b'Q');
    v.extend(int(offset));
    v.extend(int_tuple(size));
    v.extend(int_tuple(stride));
    v.push(0x89);
    v.extend(global("collections", "OrderedDict"));
    v.extend([b')', REDUCE, TUPLE, REDUCE]);
    v
}

/// `OrderedDict` of `entries` (key, value fragment), as `torch.save` writes a state dict.
fn state_dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0x80, 2];
    v.extend(global("collections", "OrderedDict"));
    v.extend([b')', REDUCE, MARK]);
    for (k, frag) in entries {
        v.extend(string(k));
        v.extend(frag);
    }
    v.extend([b'u', STOP]);
    v
}

/// A `torch.save`-style zip: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`.
fn archive(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut add = |name: &str, bytes: &[u8]| {
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    };
    add("archive/data.pkl", pkl);
    add("archive/byteorder", b"little");
    for (k, bytes) in storages {
        add(&format!("archive/data/{k}"), bytes);
    }
    add("archive/version", b"3\n");
    zip.finish().unwrap().into_inner()
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The six floats 1..=6 as storage `0`, read by each of `tensors` (key, fragment).
fn six(tensors: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    archive(&state_dict(tensors), &[("0", data)])
}

fn decode_err(bytes: &[u8]) -> String {
    match decode_pytorch_bin(bytes, "test.bin") {
        Ok(t) => panic!("decoded {} tensors, expected an error", t.len()),
        Err(Error::Format { path, msg }) => {
            assert_eq!(path, "test.bin");
            msg
        }
        Err(other) => panic!("expected a Format error, got {other}"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.contiguous_data().to_vec()
}

// ---- values and layouts -----------------------------------------------------------------------

#[test]
fn float_half_bf16_double_long_tensors_load_with_their_values_in_dict_order() {
    let half: Vec<u8> = [0x3c00u16, 0xc100, 0x3800, 0x7bff]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [1.5f32, -3.0]
        .iter()
        .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let double: Vec<u8> = [0.25f64, -1e3]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let long = 42i64.to_le_bytes().to_vec();
    let pkl = state_dict(&[
        (
            "z.weight",
            tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]),
        ),
        ("a.half", tensor("HalfStorage", "1", 4, 0, &[4], &[1])),
        ("m.bf16", tensor("BFloat16Storage", "2", 2, 0, &[2], &[1])),
        (
            "b.double",
            tensor("DoubleStorage", "3", 2, 0, &[2, 1], &[1, 1]),
        ),
        (
            "bn.num_batches_tracked",
            tensor("LongStorage", "4", 1, 0, &[], &[]),
        ),
    ]);
    let bytes = archive(
        &pkl,
        &[
            ("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            ("1", half),
            ("2", bf16),
            ("3", double),
            ("4", long),
        ],
    );
    let t = decode_pytorch_bin(&bytes, "test.bin").unwrap();
    let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "z.weight",
            "a.half",
            "m.bf16",
            "b.double",
            "bn.num_batches_tracked"
        ]
    );
    assert_eq!(t[0].1.shape(), &[2, 3]);
    assert_eq!(values(&t[0].1), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(values(&t[1].1), [1.0, -2.5, 0.5, 65504.0]);
    assert_eq!(values(&t[2].1), [1.5, -3.0]);
    assert_eq!(t[3].1.shape(), &[2, 1]);
    assert_eq!(values(&t[3].1), [0.25, -1000.0]);
    assert_eq!(t[4].1.shape(), &[] as &[usize]);
    assert_eq!(values(&t[4].1), [42.0]);
}

#[test]
fn strided_views_of_a_shared_storage_are_materialised_row_major() {
    let bytes = six(&[
        // The 2x3 matrix [[1,2,3],[4,5,6]] and its transpose, a view of the same storage.
        ("w", tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1])),
        ("w_t", tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3])),
        // The second column, from offset 1 with stride 3.
        ("col", tensor("FloatStorage", "0", 6, 1, &[2], &[3])),
        // A stride-0 broadcast of element 5 and an empty tensor.
        ("bcast", tensor("FloatStorage", "0", 6, 4, &[2, 2], &[0, 0])),
        ("empty", tensor("FloatStorage", "0", 6, 6, &[0, 4], &[4, 1])),
        // A size-1 dimension may carry any stride.
        (
            "row",
            tensor("FloatStorage", "0", 6, 3, &[1, 3], &[1 << 40, 1]),
        ),
    ]);
    let t = decode_pytorch_bin(&bytes, "test.bin").unwrap();
    assert_eq!(t[1].1.shape(), &[3, 2]);
    assert_eq!(values(&t[1].1), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(values(&t[2].1), [2.0, 5.0]);
    assert_eq!(values(&t[3].1), [5.0; 4]);
    assert_eq!(t[4].1.shape(), &[0, 4]);
    assert_eq!(values(&t[5].1), [4.0, 5.0, 6.0]);
}

#[test]
fn rebuild_parameter_and_the_state_dict_metadata_are_accepted() {
    let mut param = global("torch._utils", "_rebuild_parameter");
    param.push(MARK);
    param.extend(tensor("FloatStorage", "0", 6, 0, &[6], &[1]));
    param.push(0x88);
    param.extend(global("collections", "OrderedDict"));
    param.extend([b')', REDUCE, TUPLE, REDUCE]);
    let mut pkl = state_dict(&[("p", param)]);
    // Before STOP: BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}, as torch.save
    // writes it, reusing the OrderedDict global through the memo.
    pkl.pop();
    let mut build = vec![b'}', b'q', 0];
    build.extend(string("_metadata"));
    build.extend(global("collections", "OrderedDict"));
    build.extend([b')', REDUCE, MARK]);
    build.extend(string(""));
    build.extend([b'}', b'q', 1]);
    build.extend(string("version"));
    build.extend(int(1));
    build.extend([b's', b'u', b's', b'b', STOP]);
    pkl.extend(build);
    let bytes = archive(&pkl, &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    let t = decode_pytorch_bin(&bytes, "test.bin").unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "p");
    assert_eq!(values(&t[0].1), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn protocol_4_framing_memoize_stack_global_and_floats_are_read() {
    let short = |s: &str| [&[0x8c, s.len() as u8][..], s.as_bytes()].concat();
    // Memo 0 'collections', 1 'OrderedDict', 2 the global; the dict is made by calling memo 2.
    let mut body = short("collections");
    body.push(0x94);
    body.extend(short("OrderedDict"));
    body.extend([0x94, 0x93, 0x94, b'h', 2, b')', REDUCE]);
    body.extend(short("w"));
    body.extend(tensor("FloatStorage", "0", 6, 2, &[2, 2], &[2, 1]));
    body.push(b's');
    // BUILD with {'_metadata': 0.5}: a BINFLOAT in the ignored metadata.
    body.push(b'}');
    body.extend(short("_metadata"));
    body.push(b'G');
    body.extend(0.5f64.to_be_bytes());
    body.extend([b's', b'b', STOP]);
    let mut pkl = vec![0x80, 4, 0x95];
    pkl.extend((body.len() as u64).to_le_bytes());
    pkl.extend(body);
    let bytes = archive(&pkl, &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    let t = decode_pytorch_bin(&bytes, "test.bin").unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "w");
    assert_eq!(t[0].1.shape(), &[2, 2]);
    assert_eq!(values(&t[0].1), [3.0, 4.0, 5.0, 6.0]);
}
