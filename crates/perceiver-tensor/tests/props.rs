//! Property tests: broadcasting, views against their copies, gradient accumulation, errors
//! instead of panics, and gradients independent of whether the other input is tracked.

use perceiver_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn shape_strategy(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5, 1..=max_rank)
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(seed))
}

/// Reference broadcasting by explicit index arithmetic.
fn naive_broadcast_add(a: &Tensor, b: &Tensor, out: &[usize]) -> Vec<f32> {
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    for flat in 0..n {
        let mut idx = vec![0; out.len()];
        let mut r = flat;
        for d in (0..out.len()).rev() {
            idx[d] = r % out[d];
            r /= out[d];
        }
        let pick = |t: &Tensor| {
            let off = out.len() - t.rank();
            let ti: Vec<usize> = (0..t.rank())
                .map(|d| if t.shape()[d] == 1 { 0 } else { idx[d + off] })
                .collect();
            t.get(&ti).unwrap()
        };
        res.push(pick(a) + pick(b));
    }
    res
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn broadcast_matches_index_arithmetic(shape in shape_strategy(4), mask_a in prop::collection::vec(any::<bool>(), 4), mask_b in prop::collection::vec(any::<bool>(), 4), drop in 0usize..3, seed in 0u64..1000) {
        // a and b are the shape with some dims set to 1, and b possibly missing leading dims.
        let sa: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if mask_a[i] { 1 } else { d }).collect();
        let sb_full: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if mask_b[i] { 1 } else { d }).collect();
        let sb = sb_full[drop.min(sb_full.len() - 1)..].to_vec();
        let a = tensor(&sa, seed);
        let b = tensor(&sb, seed + 1);
        let out = a.add(&b).unwrap();
        let expect_shape: Vec<usize> = (0..shape.len()).map(|i| {
            let da = sa[i];
            let off = shape.len() - sb.len();
            let db = if i >= off { sb[i - off] } else { 1 };
            da.max(db)
        }).collect();
        prop_assert_eq!(out.shape(), &expect_shape[..]);
        prop_assert_eq!(out.to_vec(), naive_broadcast_add(&a, &b, &expect_shape));
    }

    #[test]
    fn incompatible_shapes_return_err(a in shape_strategy(3), b in shape_strategy(3)) {
        let ta = tensor(&a, 1);
        let tb = tensor(&b, 2);
        let compatible = (0..a.len().max(b.len())).all(|i| {
            let da = if i < a.len() { a[a.len() - 1 - i] } else { 1 };
            let db = if i < b.len() { b[b.len() - 1 - i] } else { 1 };
            da == db || da == 1 || db == 1
        });
        prop_assert_eq!(ta.add(&tb).is_ok(), compatible);
        prop_assert_eq!(ta.mul(&tb).is_ok(), compatible);
        // matmul never panics either
        let _ = ta.matmul(&tb);
        let _ = Tensor::concat(&[&ta, &tb], 0);
        let _ = ta.reshape(&b);
    }

    #[test]
    fn permuted_view_equals_contiguous_copy(shape in shape_strategy(4), seed in 0u64..1000, perm_seed in 0u64..1000) {
        let x = tensor(&shape, seed);
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        Rng::new(perm_seed).shuffle(&mut perm);
        let v = x.permute(&perm).unwrap();
        let c = v.contiguous();
        prop_assert!(c.is_contiguous());
        prop_assert_eq!(v.to_vec(), c.to_vec());
        // element by element against the source
        let n: usize = shape.iter().product();
        let cv = c.to_vec();
        for flat in 0..n {
            let mut idx = vec![0; shape.len()];
            let mut r = flat;
            for d in (0..shape.len()).rev() {
                idx[d] = r % v.shape()[d];
                r /= v.shape()[d];
            }
            let mut src = vec![0; shape.len()];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = idx[i];
            }
            prop_assert_eq!(cv[flat], x.get(&src).unwrap());
        }
        // reshaping the view (a copy or a view) keeps the row-major order
        let flat = v.reshape(&[n]).unwrap();
        prop_assert_eq!(flat.to_vec(), cv);
    }

    #[test]
    fn narrow_view_equals_copy(shape in shape_strategy(3), seed in 0u64..1000, axis_pick in 0usize..3, start_pick in 0usize..4) {
        let x = tensor(&shape, seed);
        let axis = axis_pick % shape.len();
        let start = start_pick % shape[axis];
        let len = shape[axis] - start;
        let v = x.narrow(axis, start, len).unwrap();
        prop_assert_eq!(v.to_vec(), v.contiguous().to_vec());
        prop_assert!(x.narrow(axis, start, len + 1).is_err());
    }

    #[test]
    fn reused_input_accumulates(shape in shape_strategy(3), seed in 0u64..1000) {
        let x = tensor(&shape, seed).requires_grad();
        // d/dx sum(x*x + x + x) = 2x + 2
        let y = x.mul(&x).unwrap().add(&x).unwrap().add(&x).unwrap().sum_all();
        let g = y.backward().unwrap();
        let got = g.get(&x).unwrap().to_vec();
        for (gv, xv) in got.iter().zip(x.to_vec()) {
            prop_assert!((gv - (2.0 * xv + 2.0)).abs() < 1e-5);
        }
    }

    #[test]
    fn gradient_does_not_depend_on_other_side_tracking(m in 1usize..5, k in 1usize..5, n in 1usize..5, seed in 0u64..1000) {
        let a = tensor(&[m, k], seed);
        let b = tensor(&[k, n], seed + 1);
        let r = tensor(&[m, n], seed + 2);
        let at = a.requires_grad();
        let bt = b.requires_grad();
        let both = at.matmul(&bt).unwrap().mul(&r).unwrap().sum_all().backward().unwrap();
        let only_a = at.matmul(&b).unwrap().mul(&r).unwrap().sum_all().backward().unwrap();
        prop_assert_eq!(both.get(&at).unwrap().to_vec(), only_a.get(&at).unwrap().to_vec());
        let at2 = a.requires_grad();
        let only_b = a.matmul(&bt).unwrap().mul(&r).unwrap().sum_all().backward().unwrap();
        prop_assert_eq!(both.get(&bt).unwrap().to_vec(), only_b.get(&bt).unwrap().to_vec());
        prop_assert!(only_b.get(&at2).is_none());
    }

    #[test]
    fn matmul_matches_naive(m in 1usize..9, k in 1usize..9, n in 1usize..9, seed in 0u64..1000, transpose_b in any::<bool>()) {
        let a = tensor(&[m, k], seed);
        let b = if transpose_b { tensor(&[n, k], seed + 1).t().unwrap() } else { tensor(&[k, n], seed + 1) };
        let c = a.matmul(&b).unwrap().to_vec();
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f32;
                for p in 0..k {
                    s += a.get(&[i, p]).unwrap() * b.get(&[p, j]).unwrap();
                }
                prop_assert!((c[i * n + j] - s).abs() <= 1e-4 * (1.0 + s.abs()));
            }
        }
    }
}
