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
use std::sync::OnceLock;
use std::time::Instant;

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
/// use perceiver_kernels::gemm::{gemm_new_then, MatRef};
/// let (a, b) = (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 0.0, 0.0, 1.0]);
/// let relu_plus_one = |blk: &mut perceiver_kernels::gemm::OutBlock<'_>| {
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
    let Some(hook) = PROFILE_HOOK.get() else {
        product();
        return;
    };
    let t0 = Instant::now();
    product();
    hook((p.a.rows, p.a.cols, p.b.cols), (p.a.layout(), b_layout), t0);
}

/// A function told of every GEMM after it ran: its shape `(m, k, n)`, the operand layouts (`'r'`
/// row-major, `'c'` column-major, `'s'` strided otherwise, `'p'` packed beforehand) and the
/// instant it started. The layer above installs one to profile products by shape.
pub type ProfileHook = fn(shape: (usize, usize, usize), layouts: (char, char), started: Instant);

static PROFILE_HOOK: OnceLock<ProfileHook> = OnceLock::new();

/// Installs the process's GEMM profiling hook; returns `false` (and changes nothing) if one is
/// already installed. Without a hook a product costs one atomic load more than the kernel.
pub fn set_profile_hook(hook: ProfileHook) -> bool {
    PROFILE_HOOK.set(hook).is_ok()
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
            crate::elementwise::add_assign(dst, src);
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
mod tests;
