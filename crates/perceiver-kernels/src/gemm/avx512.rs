//! AVX-512 single-precision GEMM: packed panels and a 14 x 32 register-tile micro-kernel.
//!
//! # Design (the Goto/BLIS loop nest)
//! - `B` is packed per block of [`KC`] rows x [`NC`] columns into panels of [`NR`] = 32 columns
//!   (two 16-lane vectors per row of the panel), `A` per block of [`MC`] x [`KC`] into panels of
//!   [`MR`] = 14 rows. Edges are padded with zeros in the packed copies, so the micro-kernel
//!   always runs a full tile and only its stores are masked.
//! - The micro-kernel keeps a 14 x 32 tile of `C` in 28 of the 32 vector registers; each step of
//!   `k` loads two vectors of `B`, broadcasts 14 values of `A` and issues 28 FMAs. The `B` panel
//!   (`KC x NR` = 32 KiB) stays in L1 while the kernel walks the `A` panels of a block (L2).
//! - `C = alpha * A·B + beta * C`: the first `KC` block applies the caller's `beta` (with
//!   `beta = 0`, `C` is written and never read, so it may be uninitialised); later blocks
//!   accumulate.
//! - Packing buffers are per thread and reused across calls (64-byte aligned).
//!
//! Each call is single-threaded; [`super`] cuts large products into one block per thread.

use super::{MatRef, Product};
use crate::avx512::lanes;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of the register tile.
pub(super) const MR: usize = 14;
/// Columns of the register tile (two 16-lane vectors).
pub(super) const NR: usize = 32;
/// Depth of a packed block: the `B` panel (`KC x NR` floats) fits in L1.
const KC: usize = 256;
/// Deepest single block (a depth up to this is not split: `KC_MAX x NR` is 40 KiB).
const KC_MAX: usize = KC + KC / 4;
/// Rows of a packed `A` block (`MC x KC` floats, 224 KiB, in L2).
const MC: usize = MR * 16;
/// Widest `B` block for which a row-major `A` is read in place rather than packed.
const DIRECT_MAX_N: usize = 4 * NR;
/// Widest column stride for which a column-major `A` is read in place (see [`run`]).
const COLS_IN_PLACE_MAX_STEP: usize = 96;
/// Columns of a packed `B` block (`KC x NC` floats, 2 MiB).
const NC: usize = NR * 64;

/// Whether this CPU has the instructions of this kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

thread_local! {
    /// Packed `A` and `B` blocks of this thread (vectors of `__m512` for 64-byte alignment).
    static PACKS: RefCell<(Vec<__m512>, Vec<__m512>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A buffer of at least `floats` elements, 64-byte aligned, contents unspecified.
fn reserve(buf: &mut Vec<__m512>, floats: usize) -> *mut f32 {
    let vecs = floats.div_ceil(16);
    if buf.len() < vecs {
        buf.resize(vecs, unsafe_zero());
    }
    buf.as_mut_ptr().cast()
}

fn unsafe_zero() -> __m512 {
    // SAFETY: an all-zero bit pattern is a valid __m512 (no instructions are executed).
    unsafe { std::mem::zeroed() }
}

/// Whether an `m x k · k x n` block suits the 14 x 32 tile: at least three quarters of the
/// tiles' area is real output (small attention heads, such as 32 queries x 16 channels, waste
/// most of it) and the depth is not tiny. Other blocks go to `matrixmultiply`, whose smaller
/// tiles are faster on them (MNIST training step: 520 examples/s with this rule, 443 with every
/// block on this kernel).
pub(super) fn suits(m: usize, k: usize, n: usize) -> bool {
    let tiles = m.div_ceil(MR) * MR * n.div_ceil(NR) * NR;
    4 * m * n >= 3 * tiles && k >= 8
}

/// Estimated floats packed by one thread when `threads` threads split an `m x k · k x n`
/// product by rows (`rows = true`) or by columns; used to choose the split.
pub(super) fn pack_cost(m: usize, k: usize, n: usize, threads: usize, rows: bool) -> usize {
    if rows {
        k * n + m.div_ceil(threads) * k * n.div_ceil(NC)
    } else {
        let nt = n.div_ceil(threads);
        k * nt + m * k * nt.div_ceil(NC)
    }
}

/// Rows `rows`, columns `cols` of the product.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]); the views must be in bounds with `k = a.cols
/// > 0`, and the block of `c` valid for writes (and reads when `beta != 0`) and not aliased.
pub(super) unsafe fn gemm_block(p: &Product<'_>, rows: Range<usize>, cols: Range<usize>) {
    PACKS.with(|packs| match packs.try_borrow_mut() {
        Ok(mut bufs) => {
            let (pa, pb) = &mut *bufs;
            // SAFETY: forwarded from the caller.
            unsafe { run(p, rows, cols, pa, pb) }
        }
        // Re-entered on this thread (not expected: the kernel calls nothing that could): use
        // fresh buffers rather than fail.
        Err(_) => {
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            // SAFETY: forwarded from the caller.
            unsafe { run(p, rows, cols, &mut pa, &mut pb) }
        }
    })
}

/// The loop nest of [`gemm_block`] with the packing buffers.
///
/// # Safety
/// As [`gemm_block`].
#[target_feature(enable = "avx512f")]
unsafe fn run(
    p: &Product<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    pa: &mut Vec<__m512>,
    pb: &mut Vec<__m512>,
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
    // Depth blocks of at most KC, or one block up to KC_MAX (no thin last block: each block is
    // one pass over C).
    let kstep = if k <= KC_MAX {
        k
    } else {
        k.div_ceil(k.div_ceil(KC))
    };
    let pb_ptr = reserve(pb, kstep * NC.min(n.next_multiple_of(NR)));
    let pa_ptr = reserve(pa, kstep * MC.min(m.next_multiple_of(MR)));
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(kstep) {
            let kc = kstep.min(k - pc);
            // SAFETY: the buffer holds kstep x round_up(nc, NR) floats; the view is in bounds.
            unsafe { pack_b(b, pc, kc, c0 + jc, nc, pb_ptr) };
            let beta_k = if pc == 0 { beta } else { 1.0 };
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                // With few B panels to reuse them, full panels of a row-major A are read in
                // place (packing would cost about as much as the product); the rest is packed.
                // A column-major A with short columns, such as `x̄ᵀ` in the folded
                // cross-attention (67 channels x tokens), is read a step at a time: MR
                // consecutive floats of one source row per step (hot, 67x784x64: 132 GFLOP/s
                // in place, 119-125 packed). With steps far apart packing wins (the weight
                // gradients' `dhᵀ`, 512 apart, from memory: 110 GFLOP/s packed, 71 in place).
                let a_rows = a.col_stride == 1;
                let a_cols = !a_rows && a.row_stride == 1 && a.col_stride <= COLS_IN_PLACE_MAX_STEP;
                let in_place = (a_rows || a_cols) && nc <= DIRECT_MAX_N;
                let direct = if in_place { mc / MR * MR } else { 0 };
                if direct < mc {
                    // SAFETY: as above for A.
                    unsafe { pack_a(a, r0 + ic + direct, mc - direct, pc, kc, pa_ptr) };
                }
                let tile = |ir: usize, jr: usize| {
                    let (mr, nr) = (MR.min(mc - ir), NR.min(nc - jr));
                    let bp = pb_ptr.wrapping_add(jr * kc);
                    let cp = c.wrapping_add((r0 + ic + ir) * ldc + c0 + jc + jr);
                    // SAFETY: the panels hold kc full steps (in place: MR rows of the view,
                    // columns pc..pc+kc); the tile's mr x nr valid part is inside the caller's
                    // block of C.
                    unsafe {
                        if ir < direct && a_rows {
                            let row = a.offset + (r0 + ic + ir) * a.row_stride + pc;
                            let ap = a.data.as_ptr().wrapping_add(row);
                            let lda = a.row_stride;
                            kernel::<true, false>(kc, ap, lda, bp, cp, ldc, mr, nr, alpha, beta_k)
                        } else if ir < direct {
                            let first = a.offset + (r0 + ic + ir) + pc * a.col_stride;
                            let ap = a.data.as_ptr().wrapping_add(first);
                            let lda = a.col_stride;
                            kernel::<true, true>(kc, ap, lda, bp, cp, ldc, mr, nr, alpha, beta_k)
                        } else {
                            let ap = pa_ptr.wrapping_add((ir - direct) * kc);
                            kernel::<false, false>(kc, ap, 0, bp, cp, ldc, mr, nr, alpha, beta_k)
                        }
                    }
                };
                // After the last depth block, finished strips go to the epilogue while hot.
                let last = pc + kc == k;
                let (rows_at, cols_at) = (r0 + ic, c0 + jc);
                if in_place {
                    // Each in-place A panel (read from memory once) meets every B panel
                    // while it is in L1.
                    for ir in (0..mc).step_by(MR) {
                        if a_rows && ir + 2 * MR <= direct {
                            // Start fetching the next panel's rows (prefetches never fault).
                            let next = a.offset + (r0 + ic + ir + MR) * a.row_stride + pc;
                            for r in 0..MR {
                                let row = a.data.as_ptr().wrapping_add(next + r * a.row_stride);
                                for x in (0..kc).step_by(16) {
                                    let line = row.wrapping_add(x).cast::<i8>();
                                    _mm_prefetch::<_MM_HINT_T0>(line);
                                }
                            }
                        }
                        for jr in (0..nc).step_by(NR) {
                            tile(ir, jr);
                        }
                        if last {
                            let rows = rows_at + ir..rows_at + (ir + MR).min(mc);
                            // SAFETY: these rows of the caller's block are final and only
                            // this thread touches them.
                            unsafe { p.finish(rows, cols_at..cols_at + nc) };
                        }
                    }
                } else {
                    // Each B panel stays in L1 while the packed A block streams from L2.
                    for jr in (0..nc).step_by(NR) {
                        for ir in (0..mc).step_by(MR) {
                            tile(ir, jr);
                        }
                    }
                    if last {
                        // The whole mc x nc block (in L2): rows of 32 columns would be too
                        // short for the epilogue's vector loops (measured slower than a
                        // separate pass).
                        // SAFETY: as above, for this block.
                        unsafe { p.finish(rows_at..rows_at + mc, cols_at..cols_at + nc) };
                    }
                }
            }
        }
    }
}

/// Packs rows `pc..pc+kc`, columns `col..col+nc` of `b` into panels of [`NR`] columns: panel
/// `j` holds `dst[j·kc·NR + p·NR + q] = b[pc + p, col + j·NR + q]`, zero past the last column.
///
/// # Safety
/// `dst` must hold `kc · round_up(nc, NR)` floats and the view must be in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, col: usize, nc: usize, dst: *mut f32) {
    for jr in (0..nc).step_by(NR) {
        // SAFETY: panel jr/NR of the destination (kc·NR floats), columns inside the view.
        unsafe { pack_b_panel(b, pc, kc, col + jr, NR.min(nc - jr), dst.add(jr * kc)) };
    }
}

/// Packs rows `pc..pc+kc`, columns `col..col+w` (`w <= NR`) of `b` into one panel:
/// `panel[p·NR + q] = b[pc + p, col + q]`, zero for `q >= w`.
///
/// # Safety
/// `panel` must hold `kc · NR` floats and the view must be in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_panel(b: MatRef<'_>, pc: usize, kc: usize, col: usize, w: usize, panel: *mut f32) {
    let src = b.data.as_ptr().wrapping_add(b.offset);
    let (rs, cs) = (b.row_stride, b.col_stride);
    if rs == 1 && cs != 1 {
        // Column-major B (the transposed weight of a Linear layer): 16 x 16 blocks
        // transposed in registers.
        for q0 in [0, 16] {
            let lines = w.saturating_sub(q0).min(16);
            for p0 in (0..kc).step_by(16) {
                // SAFETY: columns col+q0 .. +lines, rows pc+p0 .. +16 (masked) of the
                // view; the block of the panel at row p0, lanes q0..q0+16.
                unsafe {
                    let s = src.add(pc + p0 + (col + q0) * cs);
                    let len = (kc - p0).min(16);
                    transpose_block(s, cs, lines, len, panel.add(p0 * NR + q0), NR, 0xffff);
                }
            }
        }
        return;
    }
    for p in 0..kc {
        // SAFETY: row p of the panel; the source indices are inside the view.
        unsafe {
            let d = panel.add(p * NR);
            let s = src.add((pc + p) * rs + col * cs);
            if cs == 1 && w == NR {
                _mm512_storeu_ps(d, _mm512_loadu_ps(s));
                _mm512_storeu_ps(d.add(16), _mm512_loadu_ps(s.add(16)));
            } else if cs == 1 {
                let m0 = lanes(w.min(16));
                let m1 = lanes(w.saturating_sub(16));
                _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m0, s));
                _mm512_storeu_ps(d.add(16), _mm512_maskz_loadu_ps(m1, s.add(16)));
            } else if let Some(idx) = gather_index(cs) {
                // Strided in both directions: gather each step's 32 values.
                let m0 = lanes(w.min(16));
                let m1 = lanes(w.saturating_sub(16));
                let z = _mm512_setzero_ps();
                let g0 = _mm512_mask_i32gather_ps::<4>(z, m0, idx, s.cast());
                let g1 = _mm512_mask_i32gather_ps::<4>(z, m1, idx, s.add(16 * cs).cast());
                _mm512_storeu_ps(d, g0);
                _mm512_storeu_ps(d.add(16), g1);
            } else {
                for q in 0..NR {
                    *d.add(q) = if q < w { *s.add(q * cs) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs rows `row..row+mc`, columns `pc..pc+kc` of `a` into panels of [`MR`] rows: panel `i`
/// holds `dst[i·kc·MR + p·MR + r] = a[row + i·MR + r, pc + p]`, zero past the last row.
///
/// # Safety
/// `dst` must hold `kc · round_up(mc, MR)` floats and the view must be in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(a: MatRef<'_>, row: usize, mc: usize, pc: usize, kc: usize, dst: *mut f32) {
    let src = a.data.as_ptr().wrapping_add(a.offset);
    let (rs, cs) = (a.row_stride, a.col_stride);
    if rs == 1 && cs != 1 {
        // Column-major A (a transposed operand, such as `dhᵀ` in a weight gradient): each
        // step's rows are contiguous. Step by step across all panels, so each source line is
        // read once, in order (panel by panel, every panel restarted a walk down `kc` lines
        // a whole row of the source apart, which the hardware prefetchers do not follow).
        for p in 0..kc {
            // SAFETY: rows row .. row+mc (masked per panel) of column pc+p; MR lanes of step p
            // in each panel.
            unsafe {
                let s = src.add(row + (pc + p) * cs);
                for ir in (0..mc).step_by(MR) {
                    let v = _mm512_maskz_loadu_ps(lanes(mc - ir), s.add(ir));
                    _mm512_mask_storeu_ps(dst.add(ir * kc + p * MR), lanes(MR), v);
                }
            }
        }
        return;
    }
    for ir in (0..mc).step_by(MR) {
        let h = MR.min(mc - ir);
        // SAFETY: panel ir/MR of the destination (kc·MR floats).
        let panel = unsafe { dst.add(ir * kc) };
        if cs == 1 {
            // Row-major A: 14 rows x 16 steps at a time, transposed in registers (rows past
            // the last are zeros).
            for p0 in (0..kc).step_by(16) {
                // SAFETY: rows row+ir .. +h, columns pc+p0 .. +16 (masked) of the view; the
                // block of the panel at step p0 (MR lanes per step).
                unsafe {
                    let s = src.add((row + ir) * rs + pc + p0);
                    let len = (kc - p0).min(16);
                    transpose_block(s, rs, h, len, panel.add(p0 * MR), MR, lanes(MR));
                }
            }
            continue;
        }
        for r in 0..MR {
            if r < h {
                // SAFETY: row `row + ir + r` of the view, columns pc..pc+kc.
                unsafe {
                    let s = src.add((row + ir + r) * rs + pc * cs);
                    for p in 0..kc {
                        *panel.add(p * MR + r) = *s.add(p * cs);
                    }
                }
            } else {
                for p in 0..kc {
                    // SAFETY: inside the panel.
                    unsafe { *panel.add(p * MR + r) = 0.0 };
                }
            }
        }
    }
}

/// Transposes a block of `lines <= 16` source lines (`stride` apart) of `len <= 16` floats
/// into `len` destination rows (`dst_stride` apart): destination row `j`, lane `l` is element
/// `j` of line `l`, zero for `l >= lines`; only the lanes of `out_mask` are written.
///
/// # Safety
/// The `lines x len` source block and the `len` masked destination rows must be valid.
#[inline(always)]
unsafe fn transpose_block(
    src: *const f32,
    stride: usize,
    lines: usize,
    len: usize,
    dst: *mut f32,
    dst_stride: usize,
    out_mask: __mmask16,
) {
    // SAFETY: AVX-512F is enabled in every caller (target_feature functions inline this);
    // the loads and stores are masked to the valid block (a zero mask touches no memory).
    // Every loop has a constant trip count and no data-dependent branch, so it unrolls and the
    // sixteen rows stay in registers (loops with data-dependent trip counts, such as
    // `take(lines)`, spill them to the stack and run the transpose through memory: 20% of the
    // packing's samples in an A step).
    unsafe {
        let load = lanes(len);
        let mut r = [_mm512_setzero_ps(); 16];
        for (l, v) in r.iter_mut().enumerate() {
            let m = if l < lines { load } else { 0 };
            *v = _mm512_maskz_loadu_ps(m, src.wrapping_add(l * stride));
        }
        // Recursive block transpose: at distance b, rows i and i+b swap their off-diagonal
        // b x b blocks (b = 8, 4, 2, 1).
        transpose16(&mut r);
        for (j, v) in r.iter().enumerate() {
            let m = if j < len { out_mask } else { 0 };
            _mm512_mask_storeu_ps(dst.wrapping_add(j * dst_stride), m, *v);
        }
    }
}

/// One step of [`transpose_block`]: rows `i` and `i + B` (bit `B` of `i` clear) swap their
/// off-diagonal `B x B` blocks.
#[inline(always)]
fn transpose_step<const B: usize>(r: &mut [__m512; 16]) {
    let (lo, hi) = const { transpose_indices(B) };
    // SAFETY: AVX-512F is enabled in every caller (target_feature functions inline this); the
    // index vectors are read from arrays of 16 lanes.
    unsafe {
        let lo = _mm512_loadu_si512(lo.as_ptr().cast());
        let hi = _mm512_loadu_si512(hi.as_ptr().cast());
        for i in 0..16 {
            if i & B == 0 {
                let (x, y) = (r[i], r[i | B]);
                r[i] = _mm512_permutex2var_ps(x, lo, y);
                r[i | B] = _mm512_permutex2var_ps(x, hi, y);
            }
        }
    }
}

/// Transposes sixteen rows of sixteen 32-bit lanes in place (lane `j` of row `i` goes to lane
/// `i` of row `j`); the AMX kernel's packing uses it on bf16 pairs.
#[inline(always)]
pub(super) fn transpose16(r: &mut [__m512; 16]) {
    transpose_step::<8>(r);
    transpose_step::<4>(r);
    transpose_step::<2>(r);
    transpose_step::<1>(r);
}

/// Lane indices of the block-transpose step at distance `b`: `(lo, hi)` with `lo[l] = l` or
/// `16 + l - b` and `hi[l] = l + b` or `16 + l` (second operand), by bit `b` of `l`.
const fn transpose_indices(b: usize) -> ([i32; 16], [i32; 16]) {
    let (mut lo, mut hi) = ([0i32; 16], [0i32; 16]);
    let mut l = 0;
    while l < 16 {
        if l & b == 0 {
            lo[l] = l as i32;
            hi[l] = (l + b) as i32;
        } else {
            lo[l] = (16 + l - b) as i32;
            hi[l] = (16 + l) as i32;
        }
        l += 1;
    }
    (lo, hi)
}

/// Offsets `0, cs, 2·cs, ..., 15·cs` for a 16-lane gather, when they (and the second half's
/// base `16·cs`) fit in 32 bits.
#[inline(always)]
fn gather_index(cs: usize) -> Option<__m512i> {
    if cs == 0 || cs > (i32::MAX as usize) / 32 {
        return None;
    }
    let c = cs as i32;
    // SAFETY: AVX-512F is enabled in every caller (target_feature functions inline this).
    Some(unsafe {
        _mm512_setr_epi32(
            0,
            c,
            2 * c,
            3 * c,
            4 * c,
            5 * c,
            6 * c,
            7 * c,
            8 * c,
            9 * c,
            10 * c,
            11 * c,
            12 * c,
            13 * c,
            14 * c,
            15 * c,
        )
    })
}

/// One `MR x NR` tile: `C[..mr, ..nr] = alpha · A·Bp + beta · C` over `kc` steps of a packed
/// `B` panel. `A` is a packed panel (`DIRECT = false`: `a[p·MR + i]`) or `MR` rows read in
/// place (`DIRECT = true`: `a[i·lda + p]`, or `a[p·lda + i]` with `COLS` for a column-major
/// `A`).
///
/// # Safety
/// `a` and `b` must hold `kc` steps; `c` must be valid for the `mr x nr` block (row stride
/// `ldc`), read only when `beta != 0`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const DIRECT: bool, const COLS: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // Bring the tile of C towards L1 while the products run (it is read or overwritten at the
    // end; prefetches never fault, even past the valid rows).
    for i in 0..MR {
        let row = c.wrapping_add(i * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
    }
    let mut b = b;
    for p in 0..kc {
        // SAFETY: inside the panels.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = if DIRECT && COLS {
                    *a.add(p * lda + i)
                } else if DIRECT {
                    *a.add(i * lda + p)
                } else {
                    *a.add(p * MR + i)
                };
                let ai = _mm512_set1_ps(x);
                acc[0] = _mm512_fmadd_ps(ai, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(ai, b1, acc[1]);
            }
            b = b.add(NR);
        }
    }
    let masks = [lanes(nr.min(16)), lanes(nr.saturating_sub(16))];
    let va = _mm512_set1_ps(alpha);
    let vb = _mm512_set1_ps(beta);
    for (i, acc) in acc.iter().enumerate() {
        if i >= mr {
            break;
        }
        for h in 0..2 {
            if masks[h] == 0 {
                continue;
            }
            // SAFETY: the masked lanes are inside the caller's block; masked-off lanes are
            // neither read nor written.
            unsafe {
                let p = c.add(i * ldc + 16 * h);
                let mut v = _mm512_mul_ps(acc[h], va);
                if beta != 0.0 {
                    v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(masks[h], p), vb, v);
                }
                _mm512_mask_storeu_ps(p, masks[h], v);
            }
        }
    }
}
