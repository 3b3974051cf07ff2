//! Everything the reader refuses: globals, opcodes, sizes, structures, truncations.

use super::*;
use perceiver_nn::io::load_pytorch_bin;

#[test]
fn globals_outside_the_allow_list_are_refused_by_name_and_nothing_runs() {
    let flag = std::env::temp_dir().join(format!("torch-bin-flag-{}", std::process::id()));
    let cmd = format!("touch {}", flag.display());
    for (module, name) in [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("subprocess", "Popen"),
        ("torch.storage", "_load_from_bytes"),
        ("torch", "IntStorage"),
    ] {
        // GLOBAL 'module name' ; MARK cmd TUPLE ; REDUCE ; STOP
        let mut pkl = vec![0x80, 2];
        pkl.extend(global(module, name));
        pkl.push(MARK);
        pkl.extend(string(&cmd));
        pkl.extend([TUPLE, REDUCE, STOP]);
        let msg = decode_err(&archive(&pkl, &[]));
        assert!(
            msg.contains(&format!("`{module}.{name}` is not allowed")),
            "{msg}"
        );
        assert!(msg.contains("byte 2: opcode GLOBAL"), "{msg}");
        assert!(msg.contains("archive/data.pkl"), "{msg}");

        // The same through STACK_GLOBAL (protocol 4 strings).
        let mut pkl = vec![0x80, 4];
        for s in [module, name] {
            pkl.extend([0x8c, s.len() as u8]);
            pkl.extend(s.as_bytes());
        }
        pkl.extend([0x93, b')', REDUCE, STOP]);
        let msg = decode_err(&archive(&pkl, &[]));
        assert!(
            msg.contains(&format!("`{module}.{name}` is not allowed")),
            "{msg}"
        );
        assert!(msg.contains("STACK_GLOBAL"), "{msg}");
    }
    assert!(!flag.exists(), "a refused global ran");
}

#[test]
fn opcodes_outside_the_subset_are_refused_by_name_and_offset() {
    for (op, name) in [
        (b'i', "INST"),
        (b'o', "OBJ"),
        (0x81, "NEWOBJ"),
        (b'P', "PERSID"),
        (0x82, "EXT1"),
        (b'0', "POP"),
        (b'S', "STRING"),
    ] {
        let msg = decode_err(&archive(&[0x80, 2, b'N', op, STOP], &[]));
        assert!(
            msg.contains(&format!(
                "byte 3: opcode {name} (0x{op:02x}): not supported"
            )),
            "{msg}"
        );
    }
    let msg = decode_err(&archive(&[0x80, 2, 0xff, STOP], &[]));
    assert!(msg.contains("byte 2: unknown opcode 0xff"), "{msg}");
}

#[test]
fn a_storage_claiming_more_bytes_than_its_entry_is_refused() {
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "0", 7, 0, &[7], &[1]),
    )]));
    assert!(msg.contains("storage `0` claims 7 elements"), "{msg}");
    assert!(
        msg.contains("entry `archive/data/0` holds 24 bytes"),
        "{msg}"
    );
    // The wrong element type for the entry's size, and a missing entry.
    let msg = decode_err(&six(&[(
        "w",
        tensor("DoubleStorage", "0", 6, 0, &[6], &[1]),
    )]));
    assert!(msg.contains("holds 24 bytes"), "{msg}");
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "9", 6, 0, &[6], &[1]),
    )]));
    assert!(msg.contains("archive/data/9"), "{msg}");
    // A key that is not a plain name.
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "../0", 6, 0, &[6], &[1]),
    )]));
    assert!(msg.contains("not a plain name"), "{msg}");
}

#[test]
fn a_view_beyond_its_storage_is_refused() {
    for (offset, size, stride) in [
        (0, vec![3, 3], vec![3, 1]),
        (1, vec![2, 3], vec![3, 1]),
        (5, vec![2], vec![1]),
        (0, vec![2, 3], vec![1, 3]),
        (7, vec![0], vec![1]),
    ] {
        let msg = decode_err(&six(&[(
            "w",
            tensor("FloatStorage", "0", 6, offset, &size, &stride),
        )]));
        assert!(msg.contains("tensor") || msg.contains("storage"), "{msg}");
        assert!(msg.contains("_rebuild_tensor_v2"), "{msg}");
    }
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "0", 6, 0, &[2, 3], &[1]),
    )]));
    assert!(msg.contains("differ in length"), "{msg}");
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "0", 6, -1, &[2], &[1]),
    )]));
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn huge_sizes_are_refused_without_allocating() {
    let big = 1i64 << 62;
    // numel 2^62: its byte count overflows, and 2^62 elements of 2 bytes are not the entry's.
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "0", big, 0, &[6], &[1]),
    )]));
    assert!(msg.contains("claims 4611686018427387904 elements"), "{msg}");
    let msg = decode_err(&six(&[(
        "w",
        tensor("HalfStorage", "0", big, 0, &[6], &[1]),
    )]));
    assert!(msg.contains("claims"), "{msg}");
    // Sizes and strides whose extent overflows or exceeds the storage.
    for (size, stride) in [
        (vec![big], vec![1]),
        (vec![2], vec![big]),
        (vec![big, big, big], vec![1, 1, 1]),
    ] {
        let msg = decode_err(&six(&[(
            "w",
            tensor("FloatStorage", "0", 6, 0, &size, &stride),
        )]));
        assert!(msg.contains("_rebuild_tensor_v2"), "{msg}");
    }
    // A stride-0 view fits its storage but would be 2^40 elements: beyond the output bound.
    let msg = decode_err(&six(&[(
        "w",
        tensor("FloatStorage", "0", 6, 0, &[1 << 40], &[0]),
    )]));
    assert!(
        msg.contains("tensor `w`") && msg.contains("8 times the file's size"),
        "{msg}"
    );
    // A string or a frame claiming more bytes than the pickle holds.
    let msg = decode_err(&archive(
        &[0x80, 2, b'X', 0xff, 0xff, 0xff, 0x7f, b'a'],
        &[],
    ));
    assert!(
        msg.contains("BINUNICODE") && msg.contains("truncated"),
        "{msg}"
    );
    let mut frame = vec![0x80, 4, 0x95];
    frame.extend(u64::MAX.to_le_bytes());
    let msg = decode_err(&archive(&frame, &[]));
    assert!(msg.contains("FRAME"), "{msg}");
    // A LONG1 wider than 64 bits.
    let msg = decode_err(&archive(
        &[0x80, 2, 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, STOP],
        &[],
    ));
    assert!(msg.contains("does not fit 64 bits"), "{msg}");
}

#[test]
fn malformed_structures_are_refused() {
    // The result is not a dict, or holds a non-tensor.
    let msg = decode_err(&archive(&[0x80, 2, b'N', STOP], &[]));
    assert!(msg.contains("holds None, not a state dict"), "{msg}");
    let msg = decode_err(&archive(&state_dict(&[("x", int(3))]), &[]));
    assert!(msg.contains("entry `x` is an int, not a tensor"), "{msg}");
    // BUILD setting another attribute than `_metadata`.
    let mut pkl = vec![0x80, 2, b'}', b'}'];
    pkl.extend(string("__class__"));
    pkl.extend(int(1));
    pkl.extend([b's', b'b', STOP]);
    let msg = decode_err(&archive(&pkl, &[]));
    assert!(
        msg.contains("BUILD") && msg.contains("`__class__`"),
        "{msg}"
    );
    // An OrderedDict called with arguments; a storage type called.
    let mut pkl = vec![0x80, 2];
    pkl.extend(global("collections", "OrderedDict"));
    pkl.extend([b'N', 0x85, REDUCE, STOP]);
    let msg = decode_err(&archive(&pkl, &[]));
    assert!(
        msg.contains("collections.OrderedDict cannot be applied to (None)"),
        "{msg}"
    );
    // Popping an empty stack, TUPLE without MARK, an unset memo entry, no STOP.
    for (pkl, want) in [
        (vec![0x80, 2, STOP], "stack is empty"),
        (vec![0x80, 2, TUPLE], "no MARK"),
        (vec![0x80, 2, b'h', 7], "memo entry 7 was never stored"),
        (vec![0x80, 2, b'N'], "ends without STOP"),
        (vec![0x80, 9], "protocol 9"),
    ] {
        let msg = decode_err(&archive(&pkl, &[]));
        assert!(msg.contains(want), "{msg}");
    }
}

#[test]
fn nesting_and_cycles_are_bounded() {
    // 100 000 nested 1-tuples.
    let mut pkl = vec![0x80, 2, b')'];
    pkl.extend(std::iter::repeat_n(0x85, 100_000));
    pkl.push(STOP);
    let msg = decode_err(&archive(&pkl, &[]));
    assert!(msg.contains("nest more than"), "{msg}");
    // 100 000 open MARKs.
    let mut pkl = vec![0x80, 2];
    pkl.extend(std::iter::repeat_n(MARK, 100_000));
    let msg = decode_err(&archive(&pkl, &[]));
    assert!(msg.contains("nested MARKs"), "{msg}");
    // A list appended to itself through the memo: no hang, no leak of the cycle into the result.
    let msg = decode_err(&archive(
        &[0x80, 2, b']', b'q', 0, b'h', 0, b'a', STOP],
        &[],
    ));
    assert!(msg.contains("holds a list"), "{msg}");
}

#[test]
fn truncated_and_corrupted_archives_give_errors_never_panics() {
    let bytes = six(&[
        ("w", tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1])),
        ("w_t", tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3])),
    ]);
    assert_eq!(decode_pytorch_bin(&bytes, "test.bin").unwrap().len(), 2);
    for cut in 0..bytes.len() {
        decode_err(&bytes[..cut]);
    }
    // The pickle itself cut at every byte, inside a well-formed zip.
    let pkl = state_dict(&[("w", tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]))]);
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    for cut in 0..pkl.len() {
        decode_err(&archive(&pkl[..cut], &[("0", data.clone())]));
    }
    // Every byte of the pickle replaced by a few others: an error or a result, never a panic.
    for i in 0..pkl.len() {
        for b in [0x00, 0x29, 0x52, 0x71, 0x7f, 0x85, 0xff] {
            let mut p = pkl.clone();
            p[i] = b;
            match decode_pytorch_bin(&archive(&p, &[("0", data.clone())]), "test.bin") {
                Ok(_) | Err(Error::Format { .. }) => {}
                Err(other) => panic!("byte {i} = {b:#x}: {other}"),
            }
        }
    }
}

#[test]
fn other_files_are_refused() {
    let msg = decode_err(b"not a zip at all");
    assert!(msg.contains("not a torch.save zip archive"), "{msg}");
    let msg = decode_err(&[
        0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
    ]);
    assert!(msg.contains("legacy torch.save format"), "{msg}");
    // A zip without data.pkl, and one with a big-endian byte order.
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    zip.start_file("archive/other", opts).unwrap();
    let msg = decode_err(&zip.finish().unwrap().into_inner());
    assert!(msg.contains("no `<name>/data.pkl` entry"), "{msg}");
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("a/data.pkl", opts).unwrap();
    zip.write_all(&state_dict(&[])).unwrap();
    zip.start_file("a/byteorder", opts).unwrap();
    zip.write_all(b"big").unwrap();
    let msg = decode_err(&zip.finish().unwrap().into_inner());
    assert!(msg.contains("only little-endian"), "{msg}");
    // A missing file is an Io error naming it.
    let missing = std::env::temp_dir().join("torch-bin-test-does-not-exist.bin");
    match load_pytorch_bin(&missing) {
        Err(Error::Io { path, .. }) => assert!(path.contains("does-not-exist")),
        other => panic!("expected an Io error, got {:?}", other.map(|t| t.len())),
    }
}
