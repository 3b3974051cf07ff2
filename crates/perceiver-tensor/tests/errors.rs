//! Bad arguments to public ops return errors with useful messages (never panics).

use perceiver_tensor::{Error, Rng, Tensor};

fn t(shape: &[usize]) -> Tensor {
    Tensor::randn(shape, &mut Rng::new(0))
}

#[test]
fn matmul_inner_mismatch_names_op_shapes_and_caller() {
    let err = t(&[4, 7]).matmul(&t(&[5, 3])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("matmul"), "{msg}");
    assert!(msg.contains("inner dimensions differ"), "{msg}");
    assert!(msg.contains("[4, 7]") && msg.contains("[5, 3]"), "{msg}");
    // #[track_caller]: the location is this test file, not the crate's internals
    assert!(msg.contains("tests/errors.rs"), "{msg}");
    assert!(matches!(err, Error::ShapeMismatch { op: "matmul", .. }));
}

#[test]
fn out_of_range_axes_are_errors() {
    let x = t(&[2, 3]);
    for r in [
        x.sum(&[2], false),
        x.mean(&[5], true),
        x.max(&[2], false),
        x.softmax(2),
        x.log_softmax(3),
        x.narrow(2, 0, 1),
        x.transpose(0, 2),
        x.squeeze(4),
        x.index_select(2, &[0]),
    ] {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::AxisOutOfRange { .. }), "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}

#[test]
fn other_bad_arguments_are_errors() {
    let x = t(&[2, 3]);
    assert!(x.add(&t(&[4])).is_err());
    assert!(x.reshape(&[4, 2]).is_err());
    assert!(x.permute(&[0, 0]).is_err());
    assert!(x.narrow(1, 2, 2).is_err());
    assert!(x.split(&[1, 1], 1).is_err());
    assert!(x.chunk(0, 1).is_err());
    assert!(x.index_select(1, &[3]).is_err());
    assert!(x.squeeze(0).is_err());
    assert!(x.cross_entropy(&[0, 3], 0.0).is_err());
    assert!(x.cross_entropy(&[0], 0.0).is_err());
    assert!(x.cross_entropy(&[0, 1], 1.5).is_err());
    assert!(x.dropout(1.5, true, &mut Rng::new(0)).is_err());
    assert!(x.layer_norm(Some(&t(&[2])), None, 1e-5).is_err());
    assert!(x
        .gather(1, &Tensor::from_vec(vec![0.0, 5.0], &[2, 1]).unwrap())
        .is_err());
    assert!(x
        .gather(1, &Tensor::from_vec(vec![0.5, 1.0], &[2, 1]).unwrap())
        .is_err());
    assert!(Tensor::concat(&[&x, &t(&[3, 3])], 1).is_err());
    assert!(Tensor::concat(&[], 0).is_err());
    assert!(Tensor::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    assert!(t(&[2]).matmul(&t(&[2, 2])).is_err());
    assert!(t(&[2, 2, 2, 2, 2]).matmul(&t(&[2, 2])).is_err());
    assert!(t(&[3, 2, 2]).matmul(&t(&[4, 2, 2])).is_err());
    assert!(x.masked_fill(&t(&[4]), 0.0).is_err());
    assert!(Tensor::arange(0.0, 1.0, 0.0).is_err());
    assert!(x.get(&[2, 0]).is_err());
    assert!(x.to_scalar().is_err());
}

#[test]
fn views_and_constructors_behave() {
    let x = Tensor::arange(0.0, 6.0, 1.0)
        .unwrap()
        .reshape(&[2, 3])
        .unwrap();
    assert_eq!(x.t().unwrap().to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert!(!x.t().unwrap().is_contiguous());
    assert_eq!(
        x.narrow(1, 1, 2).unwrap().to_vec(),
        vec![1.0, 2.0, 4.0, 5.0]
    );
    assert_eq!(x.reshape(&[usize::MAX, 2]).unwrap().shape(), &[3, 2]);
    assert_eq!(x.unsqueeze(0).unwrap().shape(), &[1, 2, 3]);
    let b = Tensor::from_vec(vec![1.0, 2.0], &[2, 1])
        .unwrap()
        .broadcast_to(&[2, 3])
        .unwrap();
    assert_eq!(b.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    assert_eq!(
        Tensor::linspace(-1.0, 1.0, 5).to_vec(),
        vec![-1.0, -0.5, 0.0, 0.5, 1.0]
    );
    let nd = x.to_ndarray();
    assert_eq!(nd.shape(), &[2, 3]);
    assert_eq!(Tensor::from_ndarray(&nd).to_vec(), x.to_vec());
    let mut rng = Rng::new(3);
    let tn = Tensor::trunc_normal(&[1000], 0.0, 0.02, -0.04, 0.04, &mut rng).unwrap();
    assert!(tn.to_vec().iter().all(|v| v.abs() <= 0.04));
    // seeded constructors are reproducible
    assert_eq!(
        Tensor::randn(&[5], &mut Rng::new(7)).to_vec(),
        Tensor::randn(&[5], &mut Rng::new(7)).to_vec()
    );
}

#[test]
fn softmax_is_stable_and_handles_masked_rows() {
    let x = Tensor::from_vec(vec![1000.0, 1001.0, -f32::MAX, -f32::MAX], &[2, 2]).unwrap();
    let y = x.softmax(1).unwrap().to_vec();
    assert!(y.iter().all(|v| v.is_finite()));
    assert!((y[0] + y[1] - 1.0).abs() < 1e-6);
    assert!((y[2] - 0.5).abs() < 1e-6); // fully masked row: uniform, like PyTorch
    let l = x.log_softmax(1).unwrap().to_vec();
    assert!(l.iter().all(|v| v.is_finite()));
}

#[test]
fn errors_name_the_callers_line() {
    let x = Tensor::ones(&[2, 3]);
    let line = line!() + 1;
    let err = x.broadcast_to(&[4, 5]).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:{line}", file!())), "{err}");
    let line = line!() + 1;
    let err = x.reshape(&[7]).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:{line}", file!())), "{err}");
}
