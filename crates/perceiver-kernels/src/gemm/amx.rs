//! Single-precision GEMM on the AMX tile units (Intel Xeon from the 4th generation), as
//! accurate as an f32 product.
//!
//! # Method
//! AMX multiplies bf16 tiles (8-bit significands) into f32 accumulators, 16 times the
//! multiply-adds per cycle of AVX-512. To keep f32 accuracy, each operand is split into three
//! bf16 parts while it is packed, `a = a1 + a2 + a3` (each part the round-to-nearest bf16 of
//! what the previous parts leave, so together they hold 24 significant bits), and the product
//! sums the six part products down to `2^-24` relative size:
//! `a1·b1 + a1·b2 + a2·b1 + a1·b3 + a3·b1 + a2·b2` (the part products are exact in f32; the
//! tile unit accumulates in f32 with round-to-nearest). Against an f64 product the largest
//! error relative to `Σ|a·b|` is that of an f32 kernel: 1.1e-7 here and 8.4e-8 for the
//! AVX-512 kernel (test `amx_kernel_has_f32_accuracy`, 96 x 700 x 80, uniform inputs). Six
//! tile products still run about 2.7 times as many multiply-adds per cycle as the AVX-512
//! kernel (in-cache micro-benchmark).
//!
//! Where it differs from an f32 product (far outside a model's values): the unit treats bf16
//! subnormals as zero, so the third part of a value below about `2^-109` in magnitude is lost
//! (relative error up to about `2^-17` for such values) and part products below `2^-126` are
//! flushed, so products below about `2^-100` lose precision; f32 subnormal inputs count as
//! zero; an infinite input gives NaN (its second part is `∞ - ∞`) where f32 would give ±∞.
//!
//! # Design
//! - Loop nest: for each block of [`NC`] columns and [`MC`] rows (its `C` block stays in L2),
//!   for each depth block of [`KC`]: `B` and `A` are split and packed into tiles (`B` once for
//!   all row blocks when the depth is a single block, or beforehand for several products with
//!   [`PackedB`]), then every pair of 16-column tiles
//!   meets every 16-row tile of `A`, accumulating into a contiguous copy of the `C` block; each
//!   tile pair is written out with `beta` right after its last depth block, while it is in L1
//!   (a pass over the whole block at the end would cost a sixth of the AMX samples of a
//!   config A step). The `B` tiles of a column pair
//!   (`KC x 32` in three parts, 24 KiB) stay in L1 while the `A` block streams from L2.
//! - Micro-kernel: two `C` tiles (16 x 32 outputs) in `tmm0`-`tmm1`; per 32 steps of depth it
//!   loads the three parts of the `A` tile (`tmm2`-`tmm4`) and, per column tile, the three
//!   parts of `B` (`tmm5`-`tmm7`): 9 tile loads for 12 tile products.
//! - Each operand must be row- or column-major ([`suits`]); `alpha` is applied while
//!   packing `A`, `beta` when the block is written out; edge tiles are computed whole in the
//!   accumulator and written masked.
//! - Linux only: the process asks the kernel for the tile state once (`arch_prctl`).

use super::{MatRef, Product};
use crate::avx512::lanes;
use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

/// Depth of a packed block (a multiple of [`STEP`]): the `B` tiles of a column pair,
/// `KC x 32` in three bf16 parts, are 24 KiB and stay in L1. (64, 192 and 256 measured
/// slower on the Linear products of config B.)
const KC: usize = 128;
/// Columns of a block (a multiple of 32).
const NC: usize = 512;
/// Rows of a block (a multiple of 16): the `A` block (`MC x KC` in three parts, 384 KiB) and
/// the `C` block (`MC x NC` floats, 1 MiB) stay in L2.
const MC: usize = 512;
/// Depth of one tile product (16 pairs of bf16).
const STEP: usize = 32;
/// bf16 elements of one tile (16 rows of 64 bytes).
const TILE: usize = 512;

/// Whether this CPU and operating system run the AMX kernel (checked once; asks Linux for the
/// tile state on the first call).
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let cpu = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("xsave");
        // SAFETY: the CPU has XSAVE (so XGETBV), checked just before.
        cpu && amx_tiles() && unsafe { os_enabled() } && request_tiles()
    })
}

/// AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22).
fn amx_tiles() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 7 exists on every CPU with AVX-512.
    let leaf = unsafe { __cpuid_count(7, 0) };
    (leaf.edx >> 24) & 1 == 1 && (leaf.edx >> 22) & 1 == 1
}

/// Whether the operating system manages the tile state (XCR0 bits 17 and 18).
///
/// # Safety
/// The CPU must have XSAVE.
#[target_feature(enable = "xsave")]
unsafe fn os_enabled() -> bool {
    // SAFETY: XSAVE is enabled for this function; XCR0 always exists.
    unsafe { _xgetbv(0) & (3 << 17) == 3 << 17 }
}

/// Asks Linux for permission to use the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); the permission holds for every thread of the process.
#[cfg(target_os = "linux")]
fn request_tiles() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it reads no memory of ours and clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tiles() -> bool {
    false
}

/// Whether a block of `m x k · k x n` goes to this kernel: large enough for the packing to pay
/// (the tiles are 16 x 32 by 32 deep; a depth of 67, padded to 96, runs at half the AVX-512
/// kernel's rate), each operand row- or column-major.
pub(super) fn suits(m: usize, k: usize, n: usize, a: &MatRef<'_>, b: &MatRef<'_>) -> bool {
    let unit = |v: &MatRef<'_>| v.col_stride == 1 || v.row_stride == 1;
    m >= 64 && n >= 64 && k >= 128 && unit(a) && unit(b)
}

/// Estimated values split and packed by one thread when `threads` threads split an
/// `m x k · k x n` product by rows (`rows = true`) or by columns; used to choose the split
/// (`B` is packed once per block of [`MC`] rows, or once when the depth is one block; `A` once
/// per block of [`NC`] columns).
pub(super) fn pack_cost(m: usize, k: usize, n: usize, threads: usize, rows: bool) -> usize {
    let (mt, nt) = if rows {
        (m.div_ceil(threads), n)
    } else {
        (m, n.div_ceil(threads))
    };
    // With one depth block, `B`'s block serves every row block (see `run`).
    let b_packs = if k <= KC { 1 } else { mt.div_ceil(MC) };
    k * nt * b_packs + mt * k * nt.div_ceil(NC)
}

thread_local! {
    /// Packed `A` and `B` tiles and the accumulated `C` block of this thread (vectors of
    /// `__m512i` for 64-byte alignment).
    static PACKS: RefCell<[Vec<__m512i>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// A buffer of at least `bytes` bytes, 64-byte aligned, contents unspecified.
fn reserve<T>(buf: &mut Vec<__m512i>, bytes: usize) -> *mut T {
    let vecs = bytes.div_ceil(64);
    if buf.len() < vecs {
        // SAFETY: an all-zero bit pattern is a valid __m512i (no instructions are executed).
        buf.resize(vecs, unsafe { std::mem::zeroed() });
    }
    buf.as_mut_ptr().cast()
}

/// Rows `rows`, columns `cols` of the product.
///
/// # Safety
/// [`available`] must be true, `k > 0` and each operand row- or column-major (any other shape
/// runs; [`suits`] says where it pays); the views must be in bounds, and the block of `c` valid for writes (and
/// reads when `beta != 0`) and not aliased.
pub(super) unsafe fn gemm_block(p: &Product<'_>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded from the caller.
    unsafe { with_bufs(p, rows, cols, None) }
}

/// [`gemm_block`] on all of the product with `B` packed beforehand ([`PackedB`], which must
/// hold `p.b`).
///
/// # Safety
/// As [`gemm_block`].
pub(super) unsafe fn gemm_prepacked(p: &Product<'_>, pre: &PackedB) {
    let (m, n) = (p.a.rows, p.b.cols);
    assert!(
        pre.k == p.a.cols && pre.n == n,
        "amx: the packed B has another shape"
    );
    // SAFETY: forwarded from the caller.
    unsafe { with_bufs(p, 0..m, 0..n, Some(pre)) }
}

/// [`run`] with this thread's buffers.
///
/// # Safety
/// As [`gemm_block`].
unsafe fn with_bufs(
    p: &Product<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    pre: Option<&PackedB>,
) {
    PACKS.with(|packs| match packs.try_borrow_mut() {
        // SAFETY: forwarded from the caller.
        Ok(mut bufs) => unsafe { run(p, rows, cols, &mut bufs, pre) },
        // Re-entered on this thread (not expected: the kernel calls nothing that could): use
        // fresh buffers rather than fail.
        // SAFETY: forwarded from the caller.
        Err(_) => unsafe { run(p, rows, cols, &mut Default::default(), pre) },
    })
}

/// A right operand `B` (`k x n`) split and packed once, block by block as [`run`] packs it, for
/// several products with it (a layer's weights across the row blocks of its input).
pub(super) struct PackedB {
    tiles: Vec<__m512i>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs `b` (row- or column-major; panics otherwise, or where the kernel cannot run).
    pub(super) fn new(b: MatRef<'_>) -> PackedB {
        assert!(
            available() && (b.row_stride == 1 || b.col_stride == 1) && b.in_bounds(),
            "amx::PackedB: needs the tile kernel and an in-bounds row- or column-major operand"
        );
        let (k, n) = (b.rows, b.cols);
        let mut tiles = Vec::new();
        let total: usize = Self::blocks(k, n).map(|(_, _, len)| len).sum();
        let base: *mut u16 = reserve(&mut tiles, total * 2);
        let mut at = 0;
        for (jc, pc, len) in Self::blocks(k, n) {
            let (kc, nc) = (KC.min(k - pc), NC.min(n - jc));
            // SAFETY: this block's `len` values are inside `tiles`; the view is in bounds with a
            // unit stride and the CPU runs the kernel (asserted above).
            unsafe { pack_b(b, pc, kc, jc, nc, base.wrapping_add(at)) };
            at += len;
        }
        PackedB { tiles, k, n }
    }

    /// The blocks in [`run`]'s order: `(jc, pc, values)`, columns outer.
    fn blocks(k: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..n).step_by(NC).flat_map(move |jc| {
            (0..k).step_by(KC).map(move |pc| {
                let (kc, nc) = (KC.min(k - pc), NC.min(n - jc));
                (jc, pc, kc.div_ceil(STEP) * nc.next_multiple_of(32) * 3 * 32)
            })
        })
    }

    /// The packed block at columns `jc`, depth `pc`.
    fn block(&self, jc: usize, pc: usize) -> *const u16 {
        debug_assert!(jc < self.n && pc < self.k && jc.is_multiple_of(NC) && pc.is_multiple_of(KC));
        let before: usize = Self::blocks(self.k, self.n)
            .take_while(|&(j, p, _)| (j, p) != (jc, pc))
            .map(|(_, _, len)| len)
            .sum();
        self.tiles.as_ptr().cast::<u16>().wrapping_add(before)
    }
}

/// The tile configuration: palette 1, all eight tiles 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// The loop nest of [`gemm_block`] with this thread's buffers.
///
/// # Safety
/// As [`gemm_block`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn run(
    p: &Product<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    bufs: &mut [Vec<__m512i>; 3],
    pre: Option<&PackedB>,
) {
    let Product {
        alpha,
        a,
        b,
        beta,
        c,
        ldc,
        ..
    } = *p;
    let (r0, c0) = (rows.start, cols.start);
    let (m, n, k) = (rows.len(), cols.len(), a.cols);
    debug_assert!(k > 0 && (pre.is_none() || (c0 == 0 && n == b.cols)));
    let kmax = KC.min(k.next_multiple_of(STEP));
    let (mmax, nmax) = (
        MC.min(m.next_multiple_of(16)),
        NC.min(n.next_multiple_of(32)),
    );
    let [pa, pb, pc_] = bufs;
    let pa_ptr: *mut u16 = reserve(pa, mmax * kmax * 3 * 2);
    let pb_ptr: *mut u16 = reserve(pb, kmax * nmax * 3 * 2);
    let acc: *mut f32 = reserve(pc_, mmax * nmax * 4);
    // Releases the tile state on every exit, an unwinding epilogue included.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: releasing the tile state has no operands and is valid in any state.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
    let _release = Release;
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            let (i0, j0) = (r0 + ic, c0 + jc);
            let row_tiles = mc.div_ceil(16);
            // Configured per block: the epilogue of the previous block ran code of the caller's.
            // SAFETY: the tile state was granted (`available`); the configuration is 64 bytes.
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly))
            };
            // The C block accumulates in `acc`, tile pair (t, u) at 16 x 32 floats
            // `(u·row_tiles + t)·512` (rows of C a power of two apart would share cache sets).
            let acc_tile = |t: usize, u: usize| acc.wrapping_add((u * row_tiles + t) * 512);
            // C = acc + beta·C on tile pair (t, u)'s valid part (C is not read when beta = 0),
            // written as soon as its last depth block is done, while it is in L1.
            let write_out = |t: usize, u: usize| {
                let (mr, nr) = (16.min(mc - 16 * t), 32.min(nc - 32 * u));
                for i in 0..mr {
                    let src = acc_tile(t, u).wrapping_add(32 * i);
                    let dst = c.wrapping_add((i0 + 16 * t + i) * ldc + j0 + 32 * u);
                    for h in 0..2 {
                        let mask = lanes(nr.saturating_sub(16 * h));
                        // SAFETY: masked to the valid columns of row i of the caller's block;
                        // `src` is inside `acc`.
                        unsafe {
                            let mut v = _mm512_load_ps(src.wrapping_add(16 * h));
                            if beta != 0.0 {
                                let old = _mm512_maskz_loadu_ps(mask, dst.wrapping_add(16 * h));
                                v = _mm512_fmadd_ps(old, _mm512_set1_ps(beta), v);
                            }
                            _mm512_mask_storeu_ps(dst.wrapping_add(16 * h), mask, v);
                        }
                    }
                }
            };
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let ks = kc.div_ceil(STEP);
                let last = pc + kc == k;
                // B's block: packed beforehand, or here (with one depth block, the block packed
                // for the first row block serves every row block).
                let pb_ptr: *const u16 = match pre {
                    Some(pre) => pre.block(j0, pc),
                    None => {
                        if ic == 0 || k > KC {
                            // SAFETY: the buffer holds the padded block; the view is in bounds.
                            unsafe { pack_b(b, pc, kc, j0, nc, pb_ptr) };
                        }
                        pb_ptr
                    }
                };
                // SAFETY: as for B.
                unsafe { pack_a(a, i0, mc, pc, kc, alpha, pa_ptr) };
                for u in 0..nc.div_ceil(32) {
                    let bp = pb_ptr.wrapping_add(u * ks * 6 * TILE);
                    for t in 0..row_tiles {
                        let ap = pa_ptr.wrapping_add(t * ks * 3 * TILE);
                        // SAFETY: the packed tiles hold ks steps; the accumulator tile is in
                        // `acc`.
                        unsafe { kernel(ap, bp, ks, acc_tile(t, u), pc > 0) };
                        if last {
                            write_out(t, u);
                        }
                    }
                }
            }
            // SAFETY: the block is final and only this thread touches it.
            unsafe { p.finish(i0..i0 + mc, j0..j0 + nc) };
        }
    }
}

/// The three bf16 parts of 16 floats: `x ≈ p1 + p2 + p3`, each part the nearest bf16 of the
/// remainder of the previous ones (the remainders are exact in f32).
#[inline(always)]
fn split(x: __m512) -> [__m256i; 3] {
    // SAFETY: AVX512-BF16 is enabled in every caller (target_feature functions inline this).
    unsafe {
        let p1 = _mm512_cvtneps_pbh(x);
        let r1 = _mm512_sub_ps(x, _mm512_cvtpbh_ps(p1));
        let p2 = _mm512_cvtneps_pbh(r1);
        let r2 = _mm512_sub_ps(r1, _mm512_cvtpbh_ps(p2));
        let p3 = _mm512_cvtneps_pbh(r2);
        [p1, p2, p3].map(|v| std::mem::transmute::<__m256bh, __m256i>(v))
    }
}

/// Packs rows `i0..i0+mc`, depth `pc..pc+kc` of a row- or column-major `a`, times `alpha`,
/// into tiles:
/// row tile `t`, depth step `s`, part `q` at `dst[((t·ks + s)·3 + q)·TILE]`, 16 rows of 32
/// values, zero past the block.
///
/// # Safety
/// `dst` must hold `round_up(mc, 16) · ks · 3 · 32` values; the view must be in bounds with a
/// unit column or row stride.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline(never)]
unsafe fn pack_a(
    a: MatRef<'_>,
    i0: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    alpha: f32,
    dst: *mut u16,
) {
    let ks = kc.div_ceil(STEP);
    let scale = _mm512_set1_ps(alpha);
    if a.col_stride != 1 {
        // Column-major (a transposed operand, such as `dhᵀ` in a weight gradient): per depth
        // step, 32 runs of 16 rows, transposed 16 x 16 at a time into the tile rows.
        let column = |k: usize| {
            a.data
                .as_ptr()
                .wrapping_add(a.offset + i0 * a.row_stride + (pc + k) * a.col_stride)
        };
        for t in 0..mc.div_ceil(16) {
            let rows = lanes(mc - 16 * t);
            for s in 0..ks {
                for h in 0..2 {
                    let mut v = [_mm512_setzero_ps(); 16];
                    for (kk, x) in v.iter_mut().enumerate() {
                        let k = STEP * s + 16 * h + kk;
                        if k < kc {
                            // SAFETY: masked to the rows of the view (unit row stride).
                            let run = unsafe {
                                _mm512_maskz_loadu_ps(rows, column(k).wrapping_add(16 * t))
                            };
                            *x = _mm512_mul_ps(run, scale);
                        }
                    }
                    super::avx512::transpose16(&mut v);
                    for (r, x) in v.iter().enumerate() {
                        let base = dst.wrapping_add((t * ks + s) * 3 * TILE + r * 32 + 16 * h);
                        for (q, part) in split(*x).iter().enumerate() {
                            // SAFETY: inside `dst`.
                            unsafe {
                                _mm256_store_si256(base.wrapping_add(q * TILE).cast(), *part)
                            };
                        }
                    }
                }
            }
        }
        return;
    }
    let row = |r: usize| {
        a.data
            .as_ptr()
            .wrapping_add(a.offset + (i0 + r) * a.row_stride + pc)
    };
    for t in 0..mc.div_ceil(16) {
        // Fetch the next row tile's runs ahead (as for `B` in `pack_b`).
        for r in (16 * (t + 1)..16 * (t + 2)).take_while(|&r| r < mc) {
            for x in (0..kc).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(row(r).wrapping_add(x).cast());
            }
        }
        for rr in 0..16 {
            let r = 16 * t + rr;
            let src = row(r);
            for s in 0..ks {
                let base = dst.wrapping_add((t * ks + s) * 3 * TILE + rr * 32);
                for h in 0..2 {
                    let len = if r < mc {
                        (kc - STEP * s).saturating_sub(16 * h).min(16)
                    } else {
                        0
                    };
                    // SAFETY: the masked load reads only the row's elements inside the view
                    // (a zero mask reads nothing); the stores are inside `dst`.
                    unsafe {
                        let x =
                            _mm512_maskz_loadu_ps(lanes(len), src.wrapping_add(STEP * s + 16 * h));
                        let parts = split(_mm512_mul_ps(x, scale));
                        for (q, v) in parts.iter().enumerate() {
                            _mm256_store_si256(base.wrapping_add(q * TILE + 16 * h).cast(), *v);
                        }
                    }
                }
            }
        }
    }
}

/// Packs depth `pc..pc+kc`, columns `j0..j0+nc` of a row- or column-major `b` into tiles: for
/// column pair `u` (32 columns), depth step `s`, column tile `h` and part `q`, the tile at
/// `dst[(((u·ks + s)·2 + h)·3 + q)·TILE]` holds 16 rows of (depth pair, 16 columns, 2): row
/// `r`, column `j`, element `e` is part `q` of `b[pc + 32s + 2r + e, j0 + 32u + 16h + j]`.
/// Zero past the block.
///
/// # Safety
/// `dst` must hold `ks · round_up(nc, 32) · 3 · 32` values; the view must be in bounds with a
/// unit row or column stride.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline(never)]
unsafe fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, j0: usize, nc: usize, dst: *mut u16) {
    let ks = kc.div_ceil(STEP);
    let tile = |u: usize, s: usize, h: usize, q: usize| {
        dst.wrapping_add((((u * ks + s) * 2 + h) * 3 + q) * TILE)
    };
    if b.col_stride == 1 {
        // Rows of `b` are contiguous: interleave the parts of rows 2r and 2r + 1.
        let pairs = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        for s in 0..ks {
            for r in 0..16 {
                let k = STEP * s + 2 * r;
                let row = |e: usize| {
                    b.data
                        .as_ptr()
                        .wrapping_add(b.offset + (pc + k + e) * b.row_stride + j0)
                };
                for u in 0..nc.div_ceil(32) {
                    for h in 0..2 {
                        let j = 32 * u + 16 * h;
                        let width = nc.saturating_sub(j).min(16);
                        let mut parts = [[_mm256_setzero_si256(); 3]; 2];
                        for (e, part) in parts.iter_mut().enumerate() {
                            let m = if k + e < kc { lanes(width) } else { 0 };
                            // SAFETY: the masked load reads only elements of the view.
                            *part =
                                split(unsafe { _mm512_maskz_loadu_ps(m, row(e).wrapping_add(j)) });
                        }
                        for q in 0..3 {
                            let both = _mm512_inserti64x4::<1>(
                                _mm512_castsi256_si512(parts[0][q]),
                                parts[1][q],
                            );
                            let v = _mm512_permutexvar_epi16(pairs, both);
                            // SAFETY: row r of the tile is inside `dst`.
                            unsafe {
                                _mm512_store_si512(tile(u, s, h, q).wrapping_add(32 * r).cast(), v)
                            };
                        }
                    }
                }
            }
        }
    } else {
        // Columns of `b` are contiguous: each column's parts are 16 depth pairs (32-bit
        // lanes); a 16 x 16 transpose of 32-bit lanes turns 16 columns into tile rows.
        let column = |j: usize| {
            b.data
                .as_ptr()
                .wrapping_add(b.offset + pc + (j0 + j) * b.col_stride)
        };
        for u in 0..nc.div_ceil(32) {
            // The source columns are short runs (kc floats) far apart, which the hardware
            // prefetchers do not follow: fetch the next pair's columns ahead.
            for j in (32 * (u + 1)..32 * (u + 2)).take_while(|&j| j < nc) {
                for x in (0..kc).step_by(16) {
                    _mm_prefetch::<_MM_HINT_T0>(column(j).wrapping_add(x).cast());
                }
            }
            for s in 0..ks {
                let depth = kc - STEP * s;
                for h in 0..2 {
                    let mut t = [[_mm512_setzero_ps(); 16]; 3];
                    for col in 0..16 {
                        let j = 32 * u + 16 * h + col;
                        if j >= nc {
                            continue;
                        }
                        let src = column(j).wrapping_add(STEP * s);
                        // SAFETY: the masked loads read only elements of the view.
                        let (lo, hi) = unsafe {
                            (
                                split(_mm512_maskz_loadu_ps(lanes(depth), src)),
                                split(_mm512_maskz_loadu_ps(
                                    lanes(depth.saturating_sub(16)),
                                    src.wrapping_add(16),
                                )),
                            )
                        };
                        for q in 0..3 {
                            let both =
                                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo[q]), hi[q]);
                            t[q][col] = _mm512_castsi512_ps(both);
                        }
                    }
                    for (q, rows) in t.iter_mut().enumerate() {
                        super::avx512::transpose16(rows);
                        for (r, v) in rows.iter().enumerate() {
                            // SAFETY: row r of the tile is inside `dst`.
                            unsafe {
                                _mm512_store_ps(tile(u, s, h, q).wrapping_add(32 * r).cast(), *v)
                            };
                        }
                    }
                }
            }
        }
    }
}

/// `C` (a contiguous 16 x 32 accumulator tile pair at `c`) `+=` (or `=` when `!load`) the
/// product of one row tile of packed `A` and one column pair of packed `B`, over `steps` depth
/// steps.
///
/// # Safety
/// The tiles must be configured ([`CONFIG`]); `a` and `b` must hold `steps` steps; the 512
/// floats at `c` must be valid for reads and writes.
#[inline(always)]
unsafe fn kernel(a: *const u16, b: *const u16, steps: usize, c: *mut f32, load: bool) {
    macro_rules! load {
        ($t:literal, $p:expr, $stride:expr) => {
            asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $p, s = in(reg) ($stride as usize), options(nostack, readonly))
        };
    }
    macro_rules! dot {
        ($c:literal, $a:literal, $b:literal) => {
            asm!(
                concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            )
        };
    }
    let cs: usize = 32 * 4; // bytes between rows of the accumulator
    let c1 = c.wrapping_add(16);
    // SAFETY: as stated in the contract; tiles are 16 rows of 64 bytes.
    unsafe {
        if load {
            load!(0, c, cs);
            load!(1, c1, cs);
        } else {
            asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        }
        for s in 0..steps {
            let ap = a.wrapping_add(s * 3 * TILE);
            let bp = b.wrapping_add(s * 6 * TILE);
            let (a1, a2, a3) = (ap, ap.wrapping_add(TILE), ap.wrapping_add(2 * TILE));
            let b0 = |q: usize| bp.wrapping_add(q * TILE);
            let b1 = |q: usize| bp.wrapping_add((3 + q) * TILE);
            // Parts: tmm2-4 = a1, a2, a3; tmm5-7 = b1, b2, b3 of one column tile. Each B
            // register is reloaded for the second column tile as soon as its last product of
            // the first is issued.
            load!(2, a1, 64);
            load!(5, b0(0), 64);
            dot!(0, 2, 5); // a1·b1
            load!(4, a3, 64);
            dot!(0, 4, 5); // a3·b1
            load!(3, a2, 64);
            dot!(0, 3, 5); // a2·b1
            load!(6, b0(1), 64);
            load!(5, b1(0), 64);
            dot!(0, 2, 6); // a1·b2
            dot!(0, 3, 6); // a2·b2
            load!(7, b0(2), 64);
            dot!(0, 2, 7); // a1·b3
            load!(6, b1(1), 64);
            dot!(1, 2, 5);
            dot!(1, 4, 5);
            dot!(1, 3, 5);
            load!(7, b1(2), 64);
            dot!(1, 2, 6);
            dot!(1, 3, 6);
            dot!(1, 2, 7);
        }
        asm!(concat!("tilestored [{p} + {s}*1], tmm0"), p = in(reg) c, s = in(reg) cs, options(nostack));
        asm!(concat!("tilestored [{p} + {s}*1], tmm1"), p = in(reg) c1, s = in(reg) cs, options(nostack));
    }
}
