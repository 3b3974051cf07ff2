//! Single-precision GEMM: our AMX tile kernel (module `amx`, f32-accurate through three-part
//! bf16 splits) for the larger products where the CPU and the OS allow it, our AVX-512 kernel
//! (module `avx512`) where the CPU has it, else `matrixmultiply::sgemm` ([`Backend`]).
//!
//! # Design
//! - Operands are strided views ([`MatRef`]): a transposed operand is passed through its strides
//!   and never copied (the kernels pack what they read).
//! - Threading: above [`PAR_MIN_FMAS`] multiply-adds the output is cut into one block of rows
//!   (or columns) per rayon thread, and each block runs one single-threaded GEMM. The split is
//!   the one that packs fewer floats per thread (a row split packs all of `B` in every thread, a
//!   column split all of `A`). Inside a rayon task (for example
//!   a batched product that already parallelises over the batch) the blocks are ordinary
//!   fork-join jobs: when every worker is busy the forking thread runs them itself, so nesting
//!   costs a queue push, and callers may run whole programs inside a pool (as the CLI does).
//! - Bounds are checked once per call against the slices, so the `unsafe` call cannot read or
//!   write outside them.
//! - An [`Epilogue`] (bias, activation...) can run on each finished block of the output while
//!   the block is still in cache ([`gemm_new_then`]), instead of a separate pass over the
//!   whole output after the product.

use rayon::prelude::*;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Work (m·k·n multiply-adds) below which a GEMM stays on one thread.
pub const PAR_MIN_FMAS: usize = 1 << 18;

/// A read-only strided matrix view into a slice.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing elements.
    pub data: &'a [f32],
    /// Index of element (0, 0).
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix over the whole slice.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A view of a rank-2 tensor (any strides). Panics on another rank (an internal invariant
    /// of the callers, which validate shapes first).
    pub fn of(t: &'a crate::Tensor) -> Self {
        let (data, l) = t.raw();
        assert_eq!(l.shape().len(), 2, "MatRef::of needs a rank-2 tensor");
        MatRef {
            data,
            offset: l.offset(),
            rows: l.shape()[0],
            cols: l.shape()[1],
            row_stride: l.strides()[0],
            col_stride: l.strides()[1],
        }
    }

    /// The transpose (a view: strides swapped).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// `'r'` row-major (unit column stride), `'c'` column-major, `'s'` otherwise (profiling).
    fn layout(&self) -> char {
        if self.col_stride == 1 || self.cols <= 1 {
            'r'
        } else if self.row_stride == 1 || self.rows <= 1 {
            'c'
        } else {
            's'
        }
    }

    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `C = alpha · A·B + beta · C` for row-major `C` (`c.len() >= m·n`, row stride `n`).
///
/// Panics if the shapes disagree or a view reaches outside its slice; these are internal
/// invariants of the ops, which validate user shapes first.
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    gemm_ldc(alpha, a, b, beta, c, b.cols)
}

/// [`gemm`] into an output whose rows are `ldc` elements apart (`ldc >= n`), for example a
/// column block of a wider matrix: `c[i·ldc + j]` for `i < m`, `j < n`.
pub fn gemm_ldc(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    if let Some(p) = checked(alpha, a, b, beta, (c.as_mut_ptr(), c.len()), ldc) {
        // SAFETY: `checked` validated the views and the output's size.
        unsafe { gemm_raw(p) };
    }
}

/// [`gemm_ldc`] on the calling thread alone, for callers that already give each thread its
/// own share of the work (a row block of a layer per thread): no fork-join inside.
pub fn gemm_serial(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    if let Some(p) = checked(alpha, a, b, beta, (c.as_mut_ptr(), c.len()), ldc) {
        // SAFETY: `checked` validated the views and the output's size.
        unsafe { serial_raw(p) };
    }
}

/// A right operand prepared once for several single-threaded products with it
/// ([`gemm_serial_packed`]): on the AMX kernel its tiles are split and packed here, so that
/// the products skip that step (a layer's weights over each row block of its input); on
/// other kernels it only keeps the view and each product packs as usual.
pub struct PackedB<'a> {
    view: MatRef<'a>,
    #[cfg(target_arch = "x86_64")]
    amx: Option<amx::PackedB>,
}

impl<'a> PackedB<'a> {
    /// Prepares `b` (`k x n`) for products whose left operands have at least `min_rows` rows
    /// (the tile kernel is used for 64 and more).
    pub fn new(b: MatRef<'a>, min_rows: usize) -> Self {
        // A row-major left operand of no rows: the shape check here, the layout for `suits`.
        let probe = MatRef::row_major(&[], 0, b.rows);
        check(probe, b);
        #[cfg(target_arch = "x86_64")]
        {
            let tiles = Backend::detect() == Backend::Amx
                && amx::suits(min_rows, b.rows, b.cols, &probe, &b);
            PackedB {
                view: b,
                amx: tiles.then(|| amx::PackedB::new(b)),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (min_rows, probe);
            PackedB { view: b }
        }
    }
}

/// [`gemm_serial`] with a right operand prepared by [`PackedB::new`].
pub fn gemm_serial_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let len = c.len();
    // SAFETY: `c` is valid for reads and writes of `len` floats.
    unsafe { serial_packed(alpha, a, b, beta, (c.as_mut_ptr(), len), ldc) }
}

/// [`gemm_serial_packed`] with `beta = 0` into an output that need not be initialised (every
/// element of the `m x n` block is written).
pub fn gemm_serial_packed_into(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB<'_>,
    c: &mut [std::mem::MaybeUninit<f32>],
    ldc: usize,
) {
    let len = c.len();
    // SAFETY: `c` is valid for writes of `len` floats; with beta = 0 they are not read.
    unsafe { serial_packed(alpha, a, b, 0.0, (c.as_mut_ptr().cast(), len), ldc) }
}

/// The product of [`gemm_serial_packed`] into `len` floats at `c`.
///
/// # Safety
/// `c` must be valid for writes of `len` floats (and reads when `beta != 0`).
unsafe fn serial_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB<'_>,
    beta: f32,
    out: (*mut f32, usize),
    ldc: usize,
) {
    let Some(p) = checked(alpha, a, b.view, beta, out, ldc) else {
        return;
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(pre) = &b.amx {
        if amx::suits(a.rows, a.cols, b.view.cols, &a, &b.view) {
            // SAFETY: validated by `checked`; the tiles were packed from `b.view` on this CPU
            // (the AMX kernel runs).
            profiled(&p, 'p', || unsafe { amx::gemm_prepacked(&p, pre) });
            return;
        }
    }
    // SAFETY: validated by `checked`.
    unsafe { serial_raw(p) };
}

/// [`gemm_serial`] with `beta = 0` into an output that need not be initialised: every element
/// of the `m x n` block (rows `ldc` apart) is written.
pub fn gemm_serial_into(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [std::mem::MaybeUninit<f32>],
    ldc: usize,
) {
    let out = (c.as_mut_ptr().cast(), c.len());
    if let Some(p) = checked(alpha, a, b, 0.0, out, ldc) {
        // SAFETY: validated by `checked`; with beta = 0 the output is written, never read.
        unsafe { serial_raw(p) };
    }
}

/// The product `C = alpha·A·B + beta·C` into the `len` floats at `c` (rows `ldc` apart),
/// after checking the shapes, the views and the output's size (panics on a mismatch: internal
/// invariants of the ops); `None` when the output is empty.
fn checked<'a>(
    alpha: f32,
    a: MatRef<'a>,
    b: MatRef<'a>,
    beta: f32,
    (c, len): (*mut f32, usize),
    ldc: usize,
) -> Option<Product<'a>> {
    let (m, n) = (a.rows, b.cols);
    check(a, b);
    assert!(ldc >= n, "gemm: output row stride smaller than its width");
    if m == 0 || n == 0 {
        return None;
    }
    assert!(len >= (m - 1) * ldc + n, "gemm: output too small");
    Some(Product {
        alpha,
        a,
        b,
        beta,
        c,
        ldc,
        epi: None,
    })
}

/// One block covering the whole product, on this thread (profiled like [`gemm_raw`]).
///
/// # Safety
/// As [`gemm_raw`].
unsafe fn serial_raw(p: Product<'_>) {
    let (m, k, n) = (p.a.rows, p.a.cols, p.b.cols);
    // SAFETY: forwarded from the caller (the k = 0 case writes beta·C serially).
    profiled(&p, p.b.layout(), || unsafe {
        if k == 0 {
            gemm_threaded(&p)
        } else {
            gemm_block(&p, 0..m, 0..n)
        }
    });
}

/// `A·B` into a new row-major vector of `m·n` elements, `alpha`-scaled. The output is not
/// zero-filled first: with `beta = 0` the GEMM writes every element without reading it.
pub fn gemm_new(alpha: f32, a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    gemm_new_inner(alpha, a, b, None)
}

/// Work applied to each finished block of a product's output (see [`OutBlock`]).
pub type Epilogue<'a> = &'a (dyn Fn(&mut OutBlock<'_>) + Sync);

/// [`gemm_new`], then `epilogue` on the output block by block, each block as soon as its
/// final values are written (while it is in cache). The blocks tile the output exactly: every
/// element is handed over once. Blocks may be processed on different threads at once.
///
/// ```
/// use perceiver_tensor::gemm::{gemm_new_then, MatRef};
/// let (a, b) = (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 0.0, 0.0, 1.0]);
/// let relu_plus_one = |blk: &mut perceiver_tensor::gemm::OutBlock<'_>| {
///     for i in blk.rows() {
///         blk.row_mut(i).iter_mut().for_each(|v| *v = v.max(0.0) + 1.0);
///     }
/// };
/// let c = gemm_new_then(1.0, MatRef::row_major(&a, 2, 2), MatRef::row_major(&b, 2, 2), &relu_plus_one);
/// assert_eq!(c, vec![2.0, 3.0, 4.0, 5.0]);
/// ```
pub fn gemm_new_then(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, epilogue: Epilogue<'_>) -> Vec<f32> {
    gemm_new_inner(alpha, a, b, Some(epilogue))
}

fn gemm_new_inner(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, epi: Option<Epilogue<'_>>) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    check(a, b);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if m > 0 && n > 0 {
        // SAFETY: the views were checked; the buffer holds m·n elements, written (never read)
        // through the raw pointer since beta = 0 (matrixmultiply: "if β is zero, then C does
        // not need to be initialized"; the k = 0 path writes zeros).
        unsafe {
            gemm_raw(Product {
                alpha,
                a,
                b,
                beta: 0.0,
                c: out.as_mut_ptr(),
                ldc: n,
                epi,
            })
        };
    }
    // SAFETY: every one of the m·n elements was written above.
    unsafe { out.set_len(m * n) };
    out
}

fn check(a: MatRef<'_>, b: MatRef<'_>) {
    assert_eq!(b.rows, a.cols, "gemm: inner dimensions differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "gemm: operand view out of bounds"
    );
}

/// A finished block of a product's output, as an [`Epilogue`] receives it: rows
/// [`OutBlock::rows`] and columns [`OutBlock::cols`] of the `m x n` output, in the output's
/// coordinates.
pub struct OutBlock<'a> {
    c: *mut f32,
    ldc: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    _out: std::marker::PhantomData<&'a mut [f32]>,
}

impl OutBlock<'_> {
    /// The output rows of the block.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// The output columns of the block.
    pub fn cols(&self) -> Range<usize> {
        self.cols.clone()
    }

    /// The block's part of output row `i` (columns [`OutBlock::cols`]). Panics if `i` is not
    /// one of the block's rows.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(
            self.rows.contains(&i),
            "OutBlock: row {i} outside the block"
        );
        // SAFETY: the block's rows and columns are inside the output, and the GEMM hands each
        // block to one epilogue call at a time, so nothing else accesses them meanwhile.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.c.add(i * self.ldc + self.cols.start),
                self.cols.len(),
            )
        }
    }
}

/// One product `C = alpha·A·B + beta·C` into a raw output whose rows are `ldc` apart, as the
/// block kernels receive it, with the epilogue to run on finished blocks.
#[derive(Clone, Copy)]
pub(crate) struct Product<'a> {
    pub(crate) alpha: f32,
    pub(crate) a: MatRef<'a>,
    pub(crate) b: MatRef<'a>,
    pub(crate) beta: f32,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) epi: Option<Epilogue<'a>>,
}

impl Product<'_> {
    /// Runs the epilogue (if any) on rows `rows`, columns `cols` of the output.
    ///
    /// # Safety
    /// The block must be inside the output, final, and accessed by nothing else meanwhile.
    pub(crate) unsafe fn finish(&self, rows: Range<usize>, cols: Range<usize>) {
        if let Some(f) = self.epi {
            f(&mut OutBlock {
                c: self.c,
                ldc: self.ldc,
                rows,
                cols,
                _out: std::marker::PhantomData,
            });
        }
    }
}

// SAFETY: a product is shared between rayon tasks only to write disjoint blocks of `c`.
unsafe impl Send for Product<'_> {}
unsafe impl Sync for Product<'_> {}

/// The product, threaded above [`PAR_MIN_FMAS`].
///
/// # Safety
/// The views must be in bounds, `m, n > 0`, and `c` valid for writes of the `m x n` block with
/// row stride `ldc >= n` (read too when `beta != 0`).
unsafe fn gemm_raw(p: Product<'_>) {
    // SAFETY: forwarded from the caller.
    profiled(&p, p.b.layout(), || unsafe { gemm_threaded(&p) });
}

/// Runs `product` (which computes `p`), recording its time under `p`'s shape and layouts when
/// profiling is on (`b_layout`: the right operand's, or `'p'` when it was packed beforehand).
fn profiled(p: &Product<'_>, b_layout: char, product: impl FnOnce()) {
    let started = crate::autograd::profile::start();
    product();
    if let Some(t0) = started {
        let shape = (p.a.rows, p.a.cols, p.b.cols);
        crate::autograd::profile::gemm_call(shape, (p.a.layout(), b_layout), t0);
    }
}

/// [`gemm_raw`] without the profiling.
///
/// # Safety
/// As [`gemm_raw`].
unsafe fn gemm_threaded(p: &Product<'_>) {
    let (m, k, n) = (p.a.rows, p.a.cols, p.b.cols);
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: inside the block the caller vouched for.
                unsafe {
                    let x = p.c.add(i * p.ldc + j);
                    *x = if p.beta == 0.0 { 0.0 } else { *x * p.beta };
                }
            }
        }
        // SAFETY: the whole output is final.
        unsafe { p.finish(0..m, 0..n) };
        return;
    }
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * k * n < PAR_MIN_FMAS {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_block(p, 0..m, 0..n) };
        return;
    }
    if p.epi.is_none() && split_depth(m, k, n, threads) {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_depth_split(p, threads) };
        return;
    }
    if split_rows(p, threads) {
        let rows = m.div_ceil(threads);
        (0..threads).into_par_iter().for_each(|t| {
            let (r0, r1) = (t * rows, ((t + 1) * rows).min(m));
            if r0 < r1 {
                // SAFETY: row blocks are disjoint and inside the caller's output.
                unsafe { gemm_block(p, r0..r1, 0..n) };
            }
        });
    } else {
        let cols = n.div_ceil(threads).next_multiple_of(32).min(n);
        (0..n.div_ceil(cols)).into_par_iter().for_each(|t| {
            let (c0, c1) = (t * cols, ((t + 1) * cols).min(n));
            // SAFETY: column blocks are disjoint and inside the caller's output.
            unsafe { gemm_block(p, 0..m, c0..c1) };
        });
    }
}

/// The product cut along the depth, one range of `k` per thread: the first range accumulates
/// into `C` with the caller's `beta`, the others into temporaries added to `C` at the end. For
/// small outputs over a long depth (a weight gradient `dhᵀ·x` over 2048 tokens), where cutting
/// rows or columns would make every thread pack the whole of the other operand.
///
/// # Safety
/// As [`gemm_raw`], without an epilogue.
unsafe fn gemm_depth_split(p: &Product<'_>, threads: usize) {
    let (m, k, n) = (p.a.rows, p.a.cols, p.b.cols);
    let ks = k.div_ceil(threads);
    let mut parts: Vec<Option<Vec<f32>>> = (0..threads)
        .map(|t| (t > 0).then(|| vec![0.0f32; m * n]))
        .collect();
    parts.par_iter_mut().enumerate().for_each(|(t, part)| {
        let (k0, k1) = (t * ks, ((t + 1) * ks).min(k));
        if k0 >= k1 {
            return;
        }
        let a = MatRef {
            offset: p.a.offset + k0 * p.a.col_stride,
            cols: k1 - k0,
            ..p.a
        };
        let b = MatRef {
            offset: p.b.offset + k0 * p.b.row_stride,
            rows: k1 - k0,
            ..p.b
        };
        let q = match part {
            None => Product { a, b, ..*p },
            Some(buf) => Product {
                a,
                b,
                beta: 0.0,
                c: buf.as_mut_ptr(),
                ldc: n,
                ..*p
            },
        };
        // SAFETY: the first part writes the caller's output, the others their own buffers of
        // m x n; the depth ranges are inside the views.
        unsafe { gemm_block(&q, 0..m, 0..n) };
    });
    for buf in parts.iter().flatten() {
        for (i, src) in buf.chunks(n).enumerate() {
            // SAFETY: row i of the caller's m x n output block, written by nothing else now.
            let dst = unsafe { std::slice::from_raw_parts_mut(p.c.add(i * p.ldc), n) };
            crate::kernels::add_assign(dst, src);
        }
    }
}

/// Whether to cut an `m x k · k x n` product along its depth ([`gemm_depth_split`]): when that
/// packs fewer floats per thread than cutting rows or columns, counting the temporaries.
fn split_depth(m: usize, k: usize, n: usize, threads: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if Backend::detect().has_avx512() && k >= 256 * threads {
        let depth = (m * k + k * n).div_ceil(threads) + 2 * m * n * (threads - 1);
        let rows = avx512::pack_cost(m, k, n, threads, true);
        let cols = avx512::pack_cost(m, k, n, threads, false);
        return 10 * depth < 9 * rows.min(cols);
    }
    let _ = (m, k, n, threads);
    false
}

/// Whether to cut an `m x k · k x n` product into row blocks (else column blocks).
fn split_rows(p: &Product<'_>, threads: usize) -> bool {
    let (m, k, n) = (p.a.rows, p.a.cols, p.b.cols);
    #[cfg(target_arch = "x86_64")]
    if Backend::detect() == Backend::Amx && amx::suits(m, k, n, &p.a, &p.b) {
        return amx::pack_cost(m, k, n, threads, true) <= amx::pack_cost(m, k, n, threads, false);
    }
    #[cfg(target_arch = "x86_64")]
    if Backend::detect().has_avx512() {
        return avx512::pack_cost(m, k, n, threads, true)
            <= avx512::pack_cost(m, k, n, threads, false);
    }
    m >= n || m >= 64 * threads
}

/// The GEMM implementation a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Our AMX tile kernel for large products (f32-accurate through three-part bf16 splits;
    /// module docs of `gemm::amx`), the AVX-512 kernel for the others (Intel Xeon from the
    /// 4th generation, on Linux).
    Amx,
    /// Our packed AVX-512 kernel (x86-64 CPUs with AVX-512F).
    Avx512,
    /// `matrixmultiply::sgemm` (every other CPU).
    MatrixMultiply,
}

impl Backend {
    /// The backend of this CPU: AMX, else AVX-512, else `matrixmultiply`. The environment
    /// variable `PERCEIVER_GEMM` can ask for a lesser one (for comparisons): `avx512` or
    /// `matrixmultiply`.
    pub fn detect() -> Backend {
        use std::sync::OnceLock;
        static CHOSEN: OnceLock<Backend> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let asked = std::env::var("PERCEIVER_GEMM").unwrap_or_default();
            #[cfg(target_arch = "x86_64")]
            if avx512::available() && asked != "matrixmultiply" {
                if asked != "avx512" && amx::available() {
                    return Backend::Amx;
                }
                return Backend::Avx512;
            }
            let _ = asked;
            Backend::MatrixMultiply
        })
    }

    /// Whether the AVX-512 kernel runs (alone, or beside AMX for the smaller products).
    pub fn has_avx512(self) -> bool {
        matches!(self, Backend::Amx | Backend::Avx512)
    }
}

/// Rows `rows`, columns `cols` of the product.
///
/// # Safety
/// The views must be in bounds and the block of `c` valid for writes and not aliased.
unsafe fn gemm_block(p: &Product<'_>, rows: Range<usize>, cols: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    if Backend::detect() == Backend::Amx && amx::suits(rows.len(), p.a.cols, cols.len(), &p.a, &p.b)
    {
        // SAFETY: the CPU and OS run AMX (detected) and the block suits it; the rest is
        // forwarded from the caller.
        unsafe { amx::gemm_block(p, rows, cols) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if Backend::detect().has_avx512() && avx512::suits(rows.len(), p.a.cols, cols.len()) {
        // SAFETY: the CPU has AVX-512F (detected); the rest is forwarded from the caller.
        unsafe { avx512::gemm_block(p, rows, cols) };
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { mm_block(p, rows, cols) }
}

/// [`gemm_block`] through `matrixmultiply::sgemm`.
///
/// # Safety
/// As [`gemm_block`].
unsafe fn mm_block(p: &Product<'_>, rows: Range<usize>, cols: Range<usize>) {
    let (a, b) = (p.a, p.b);
    let a_ptr = a
        .data
        .as_ptr()
        .wrapping_add(a.offset + rows.start * a.row_stride);
    let b_ptr = b
        .data
        .as_ptr()
        .wrapping_add(b.offset + cols.start * b.col_stride);
    let c_ptr = p.c.wrapping_add(rows.start * p.ldc + cols.start);
    // SAFETY: forwarded from the caller; strides describe in-bounds views.
    unsafe {
        matrixmultiply::sgemm(
            rows.len(),
            a.cols,
            cols.len(),
            p.alpha,
            a_ptr,
            a.row_stride as isize,
            a.col_stride as isize,
            b_ptr,
            b.row_stride as isize,
            b.col_stride as isize,
            p.beta,
            c_ptr,
            p.ldc as isize,
            1,
        );
        // The block is final (matrixmultiply computes it at once).
        p.finish(rows, cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The `cols x rows` transpose of a row-major `rows x cols` matrix.
    fn transposed(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| x[(i % rows) * cols + i / rows])
            .collect()
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
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
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
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
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
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
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

    fn check_all(block: Block) {
        for &(m, k, n) in SHAPES {
            for (ta, tb, beta) in [
                (false, false, 0.0),
                (true, false, 1.0),
                (false, true, 0.5),
                (true, true, 0.0),
            ] {
                check_backend(block, m, k, n, ta, tb, beta);
            }
        }
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
        if !avx512::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
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
        if !amx::available() {
            eprintln!("skipped: this CPU or OS does not run AMX tiles");
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
        for (m, k, n) in shapes.into_iter().chain(SHAPES.iter().copied()) {
            for (ta, tb, beta) in [
                (false, false, 0.0),
                (true, true, 1.0),
                (false, true, 0.5),
                (true, false, 0.0),
            ] {
                check_backend(amx::gemm_block, m, k, n, ta, tb, beta);
            }
        }
    }

    /// The AMX kernel's three-part bf16 split keeps f32 accuracy: against an f64 product, the
    /// error relative to `Σ|a·b|` stays at the level of f32 rounding (a two-part split, or
    /// three parts with fewer products, would be near 1e-5).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn amx_kernel_has_f32_accuracy() {
        if !amx::available() {
            eprintln!("skipped: this CPU or OS does not run AMX tiles");
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
            let p = Product {
                alpha: 1.0,
                a: MatRef::row_major(&a, m, k),
                b: MatRef::row_major(&b, k, n),
                beta: 0.0,
                c: c.as_mut_ptr(),
                ldc: n,
                epi: None,
            };
            // SAFETY: the views are in bounds and `c` holds the m x n output.
            unsafe { block(&p, 0..m, 0..n) };
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
        let abuf: Vec<f32> = (0..m * lda)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let bbuf: Vec<f32> = (0..k * ldb)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
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
        let p = Product {
            alpha: 1.0,
            a: view(&abuf, m, k, lda),
            b: view(&bbuf, k, n, ldb),
            beta: 0.0,
            c: c.as_mut_ptr(),
            ldc: n,
            epi: None,
        };
        // SAFETY: the views are in bounds and `c` holds the m x n product.
        unsafe { block(&p, 0..m, 0..n) };
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
}
