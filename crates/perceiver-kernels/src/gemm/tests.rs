//! GEMM tests: every backend and entry point against a naive f64 product.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// The `cols x rows` transpose of a row-major `rows x cols` matrix.
fn transposed(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| x[(i % rows) * cols + i / rows])
        .collect()
}

/// Test operands of `a_len` and `b_len` elements, values in `[-1, 1]`.
fn operands(a_len: usize, b_len: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..a_len).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0);
    let b = (0..b_len).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0);
    (a.collect(), b.collect())
}

/// Whether `block`'s instructions run here (`available`); prints why the test is skipped
/// when not.
fn runs(available: bool, why_not: &str) -> bool {
    if !available {
        eprintln!("skipped: {why_not}");
    }
    available
}

/// Whether the AMX kernel runs here; says why the test is skipped when not.
#[cfg(target_arch = "x86_64")]
fn amx_runs() -> bool {
    runs(amx::available(), "this CPU or OS does not run AMX tiles")
}

/// `c = a·b` over the whole `rows(a) x cols(b)` output (row stride `ldc`) through one backend.
fn product_on(block: Block, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize) {
    let (m, n) = (a.rows, b.cols);
    assert!(c.len() >= (m.max(1) - 1) * ldc + n);
    let p = Product {
        alpha: 1.0,
        a,
        b,
        beta: 0.0,
        c: c.as_mut_ptr(),
        ldc,
        epi: None,
    };
    // SAFETY: the views are in bounds and `c` holds the m x n output with row stride `ldc`.
    unsafe { block(&p, 0..m, 0..n) };
}

fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// The single-threaded entries: into a wider output (row stride > n), accumulating with
/// beta, and into uninitialised memory; a depth of zero scales C by beta.
#[test]
fn serial_products_match_the_naive_product() {
    for (m, k, n) in [(3, 5, 4), (70, 130, 90), (200, 0, 3)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 9) as f32 - 4.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.5).collect();
        let want = naive(m, k, n, &a, &b);
        let ldc = n + 3;
        let mut c = vec![1.0f32; m * ldc];
        let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
        gemm_serial(1.0, am, bm, 2.0, &mut c, ldc);
        let mut fresh = vec![std::mem::MaybeUninit::new(f32::NAN); m * ldc];
        gemm_serial_into(1.0, am, bm, &mut fresh, ldc);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j < n {
                    let w = want[i * n + j];
                    assert!(
                        (got - w - 2.0).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n}"
                    );
                    // SAFETY: written by gemm_serial_into (j < n).
                    let f = unsafe { fresh[i * ldc + j].assume_init() };
                    assert!((f - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}x{k}x{n} into");
                } else {
                    assert_eq!(got, 1.0, "a column past n was written");
                }
            }
        }
    }
}

/// Products with a right operand prepared once ([`PackedB`]): several blocks of columns
/// and depth on the tile kernel, both layouts of `B`, beta, and left operands too small
/// for the tiles (the plain path); the same values as the naive product.
#[test]
fn prepacked_products_match_the_naive_product() {
    let shapes = [
        (70, 300, 600),
        (64, 128, 64),
        (200, 40, 90),
        (20, 130, 70),
        (600, 128, 96),
    ];
    for (m, k, n) in shapes {
        let (a, b) = operands(m * k, k * n);
        let bt = transposed(&b, k, n);
        let want = naive(m, k, n, &a, &b);
        let am = MatRef::row_major(&a, m, k);
        // The same left operand column-major (a transposed copy read through strides).
        let at = transposed(&a, m, k);
        let amt = MatRef::row_major(&at, k, m).t();
        for bm in [
            MatRef::row_major(&b, k, n),
            MatRef::row_major(&bt, n, k).t(),
        ] {
            // Prepared for 64-row products; used by all of A (above 512 rows: two row
            // blocks), by half of it, and by A column-major.
            let pre = PackedB::new(bm, 64);
            let half = MatRef { rows: m / 2, ..am };
            for (mm, rows) in [(am, m), (half, m / 2), (amt, m)] {
                let mut c = vec![1.0f32; rows * n];
                gemm_serial_packed(1.0, mm, &pre, 0.5, &mut c, n);
                let mut fresh = vec![std::mem::MaybeUninit::new(f32::NAN); rows * n];
                gemm_serial_packed_into(1.0, mm, &pre, &mut fresh, n);
                for (i, w) in want[..rows * n].iter().enumerate() {
                    let tol = 1e-4 * (1.0 + w.abs());
                    assert!((c[i] - w - 0.5).abs() <= tol, "{m}x{k}x{n} at {i}");
                    // SAFETY: every element was written by gemm_serial_packed_into.
                    let f = unsafe { fresh[i].assume_init() };
                    assert!((f - w).abs() <= tol, "{m}x{k}x{n} into, at {i}");
                }
            }
        }
    }
}

fn check(m: usize, k: usize, n: usize) {
    let (a, b) = operands(m * k, k * n);
    let want = naive(m, k, n, &a, &b);
    let mut c = vec![f32::NAN; m * n];
    gemm(
        1.0,
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        0.0,
        &mut c,
    );
    for (x, y) in c.iter().zip(&want) {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{m}x{k}x{n}: {x} vs {y}"
        );
    }
    // transposed operand through strides, and beta = 1 accumulation
    let bt = transposed(&b, k, n);
    let mut c2 = want.clone();
    let btv = MatRef::row_major(&bt, n, k).t();
    gemm(1.0, MatRef::row_major(&a, m, k), btv, 1.0, &mut c2);
    for (x, y) in c2.iter().zip(&want) {
        assert!(
            (x - 2.0 * y).abs() <= 1e-4 * (1.0 + y.abs()),
            "beta=1 {m}x{k}x{n}"
        );
    }
}

type Block = unsafe fn(&Product<'_>, Range<usize>, Range<usize>);

/// One visit counter per output element.
fn visits(len: usize) -> Vec<AtomicU32> {
    (0..len).map(|_| AtomicU32::new(0)).collect()
}

/// An epilogue applying `f` to each element it is handed, counting the visits of element
/// `(i, j)` in `seen[i·n + j]`.
fn counting_epilogue<'a>(
    seen: &'a [AtomicU32],
    n: usize,
    f: impl Fn(f32) -> f32 + Sync + 'a,
) -> impl Fn(&mut OutBlock<'_>) + Sync + 'a {
    move |blk: &mut OutBlock<'_>| {
        let cols = blk.cols();
        for i in blk.rows() {
            for (j, v) in cols.clone().zip(blk.row_mut(i)) {
                seen[i * n + j].fetch_add(1, Ordering::Relaxed);
                *v = f(*v);
            }
        }
    }
}

/// One backend on a sub-block (rows 1.., columns 2.. when large enough) against the naive
/// product: row-major or transposed operands, alpha and beta, an output row stride wider
/// than the product, NaN in C when beta = 0, and nothing written outside the block. An
/// epilogue `v -> 2v - 1` must see every element of the block once, with its final value.
fn check_backend(block: Block, m: usize, k: usize, n: usize, ta: bool, tb: bool, beta: f32) {
    let (a, b) = operands(m * k, k * n);
    let want = naive(m, k, n, &a, &b);
    let at = transposed(&a, m, k);
    let bt = transposed(&b, k, n);
    let av = if ta {
        MatRef::row_major(&at, k, m).t()
    } else {
        MatRef::row_major(&a, m, k)
    };
    let bv = if tb {
        MatRef::row_major(&bt, n, k).t()
    } else {
        MatRef::row_major(&b, k, n)
    };
    let ldc = n + 3;
    let (r0, c0) = (m.min(1), n.min(2));
    let init = |i: usize, j: usize| (i * 3 + j) as f32 * 0.01;
    let mut c: Vec<f32> = (0..m * ldc)
        .map(|x| {
            let (i, j) = (x / ldc, x % ldc);
            let inside = i >= r0 && j >= c0 && j < n;
            if inside && beta == 0.0 {
                f32::NAN
            } else {
                init(i, j)
            }
        })
        .collect();
    let alpha = 0.5;
    let seen = visits(m * n);
    let epi = counting_epilogue(&seen, n, |v| 2.0 * v - 1.0);
    // SAFETY: the views are in bounds and the block is inside `c`.
    let p = Product {
        alpha,
        a: av,
        b: bv,
        beta,
        c: c.as_mut_ptr(),
        ldc,
        epi: Some(&epi),
    };
    // SAFETY: as above.
    unsafe { block(&p, r0..m, c0..n) };
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if i >= r0 && j >= c0 && j < n {
                let visits = seen[i * n + j].load(Ordering::Relaxed);
                assert_eq!(visits, 1, "{m}x{k}x{n}: epilogue visits of ({i},{j})");
                let w = 2.0 * (alpha * want[i * n + j] + beta * init(i, j)) - 1.0;
                assert!(
                    (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{m}x{k}x{n} ta={ta} tb={tb} beta={beta} at ({i},{j}): {got} vs {w}"
                );
            } else {
                assert_eq!(
                    got,
                    init(i, j),
                    "{m}x{k}x{n}: wrote outside the block at ({i},{j})"
                );
            }
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (2, 1, 3),
    (15, 1, 33),
    (14, 7, 32),
    (29, 257, 65),
    (13, 3, 31),
    (230, 300, 70),
    (3, 40, 2100),
    (300, 520, 40),
    // a column-major A of short columns read in place across several depth blocks
    (67, 784, 64),
];

/// Operand layouts and beta: `(A transposed, B transposed, beta)`.
type Layouts = [(bool, bool, f32); 4];

/// [`check_backend`] on every shape of `shapes` with every layout of `layouts`.
fn check_shapes(
    block: Block,
    shapes: impl IntoIterator<Item = (usize, usize, usize)>,
    layouts: Layouts,
) {
    for (m, k, n) in shapes {
        for (ta, tb, beta) in layouts {
            check_backend(block, m, k, n, ta, tb, beta);
        }
    }
}

fn check_all(block: Block) {
    let layouts = [
        (false, false, 0.0),
        (true, false, 1.0),
        (false, true, 0.5),
        (true, true, 0.0),
    ];
    check_shapes(block, SHAPES.iter().copied(), layouts);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Random small shapes, layouts and beta on both backends.
    #[test]
    fn both_backends_match_the_naive_product_on_random_shapes(
        m in 1usize..40, k in 1usize..70, n in 1usize..80,
        ta: bool, tb: bool, half_beta: bool,
    ) {
        let beta = if half_beta { 0.5 } else { 0.0 };
        check_backend(mm_block, m, k, n, ta, tb, beta);
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            check_backend(avx512::gemm_block, m, k, n, ta, tb, beta);
        }
        #[cfg(target_arch = "x86_64")]
        if amx::available() {
            check_backend(amx::gemm_block, m, k, n, ta, tb, beta);
        }
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn avx512_kernel_matches_the_naive_product() {
    if !runs(avx512::available(), "this CPU has no AVX-512F") {
        return;
    }
    check_all(avx512::gemm_block);
    check_doubly_strided(avx512::gemm_block);
}

/// The AMX kernel on its layouts (each operand row- or column-major): edge tiles,
/// several depth and column blocks, alpha and beta.
#[test]
#[cfg(target_arch = "x86_64")]
fn amx_kernel_matches_the_naive_product() {
    if !amx_runs() {
        return;
    }
    let shapes = [
        (1, 1, 1),
        (17, 33, 40),
        (70, 300, 600),
        (130, 64, 66),
        (520, 129, 35),
        // Two row blocks sharing one packed depth block of `B`.
        (600, 100, 70),
    ];
    let layouts = [
        (false, false, 0.0),
        (true, true, 1.0),
        (false, true, 0.5),
        (true, false, 0.0),
    ];
    let all = shapes.into_iter().chain(SHAPES.iter().copied());
    check_shapes(amx::gemm_block, all, layouts);
}

/// The AMX kernel's three-part bf16 split keeps f32 accuracy: against an f64 product, the
/// error relative to `Σ|a·b|` stays at the level of f32 rounding (a two-part split, or
/// three parts with fewer products, would be near 1e-5).
#[test]
#[cfg(target_arch = "x86_64")]
fn amx_kernel_has_f32_accuracy() {
    if !amx_runs() {
        return;
    }
    let (m, k, n) = (96, 700, 80);
    let mut seed = 12345u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rnd() * 3.0).collect();
    let worst = |block: Block| {
        let mut c = vec![0.0; m * n];
        let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
        product_on(block, am, bm, &mut c, n);
        let mut worst = 0.0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut size) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                    exact += t;
                    size += t.abs();
                }
                worst = worst.max((c[i * n + j] as f64 - exact).abs() / size);
            }
        }
        worst
    };
    let (tiles, vectors) = (worst(amx::gemm_block), worst(avx512::gemm_block));
    eprintln!("largest error relative to Σ|a·b|: AMX {tiles:e}, AVX-512 {vectors:e}");
    assert!(
        tiles < 2.0 * vectors && tiles < 2e-7,
        "AMX {tiles:e} vs AVX-512 {vectors:e}"
    );
}

/// Operands strided in both directions (every other column of a wider row): the general
/// packing paths.
fn check_doubly_strided(block: Block) {
    let (m, k, n) = (17, 23, 45);
    let (lda, ldb) = (2 * k + 1, 2 * n + 3);
    let (abuf, bbuf) = operands(m * lda, k * ldb);
    let a: Vec<f32> = (0..m * k)
        .map(|i| abuf[(i / k) * lda + 2 * (i % k)])
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| bbuf[(i / n) * ldb + 2 * (i % n)])
        .collect();
    let want = naive(m, k, n, &a, &b);
    let view = |data, rows, cols, row_stride| MatRef {
        data,
        offset: 0,
        rows,
        cols,
        row_stride,
        col_stride: 2,
    };
    let mut c = vec![f32::NAN; m * n];
    let (av, bv) = (view(&abuf, m, k, lda), view(&bbuf, k, n, ldb));
    product_on(block, av, bv, &mut c, n);
    for (x, y) in c.iter().zip(&want) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn matrixmultiply_path_matches_the_naive_product() {
    check_all(mm_block);
    check_doubly_strided(mm_block);
}

#[test]
fn single_threaded_sizes() {
    for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 64, 1)] {
        check(m, k, n);
    }
}

#[test]
fn threaded_row_and_column_splits() {
    // Above PAR_MIN_FMAS: both the row split (m >= n) and the column split (m < n).
    check(300, 64, 40);
    check(20, 128, 300);
    check(129, 65, 131);
    // small outputs over a long depth: the depth split (uneven ranges, beta = 0 and 1)
    check(64, 2048, 64);
    check(30, 1501, 17);
}

#[test]
fn output_with_row_stride_writes_only_its_columns() {
    let (m, k, n, ldc) = (5, 4, 3, 7);
    let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.05).collect();
    let want = naive(m, k, n, &a, &b);
    let mut c = vec![-1.0f32; (m - 1) * ldc + n + 2];
    gemm_ldc(
        1.0,
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        0.0,
        &mut c[2..],
        ldc,
    );
    for i in 0..m {
        for j in 0..ldc {
            let idx = 2 + i * ldc + j;
            if idx >= c.len() {
                continue;
            }
            if j < n {
                assert!((c[idx] - want[i * n + j]).abs() < 1e-4);
            } else {
                assert_eq!(c[idx], -1.0, "wrote outside the block");
            }
        }
    }
    assert_eq!(&c[..2], &[-1.0, -1.0]);
}

#[test]
fn epilogue_sees_final_values_once_when_threaded() {
    // Threaded splits and several depth blocks (k > KC_MAX on the AVX-512 path).
    for &(m, k, n) in &[(300, 700, 40), (20, 128, 300), (129, 65, 131), (7, 0, 5)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 9.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect();
        let want = naive(m, k, n, &a, &b);
        let seen = visits(m * n);
        let epi = counting_epilogue(&seen, n, |v| v.max(0.0));
        let c = gemm_new_then(
            1.0,
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            &epi,
        );
        for (idx, (got, w)) in c.iter().zip(&want).enumerate() {
            assert!(
                (got - w.max(0.0)).abs() <= 1e-4 * (1.0 + w.abs()),
                "{m}x{k}x{n}"
            );
            let visits = seen[idx].load(Ordering::Relaxed);
            assert_eq!(visits, 1, "{m}x{k}x{n}: element {idx}");
        }
    }
}

#[test]
fn nested_in_rayon_is_correct() {
    rayon::scope(|s| {
        s.spawn(|_| check(200, 64, 64));
    });
}
