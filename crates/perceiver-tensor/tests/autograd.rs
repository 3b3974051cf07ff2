//! Autograd engine behaviour: recording, no_grad, detach, errors, deep graphs, custom ops.

use perceiver_tensor::autograd::Leaf;
use perceiver_tensor::{apply_custom, no_grad, CustomOp, Forward, Result, Rng, Tensor};
use std::sync::{Arc, Mutex};

#[test]
fn untracked_inputs_record_nothing() {
    let x = Tensor::ones(&[3]);
    let y = x.exp().add(&x).unwrap();
    assert!(!y.is_tracked());
    assert!(y.sum_all().backward().is_err());
}

#[test]
fn no_grad_and_detach_cut_the_graph() -> Result<()> {
    let w = Tensor::ones(&[2]).requires_grad();
    let y = no_grad(|| w.mul_scalar(2.0));
    assert!(!y.is_tracked());
    let z = w.detach().mul(&w)?.sum_all();
    let g = z.backward()?;
    // only the tracked side contributes: d/dw (c * w) = c = 1
    assert_eq!(g.get(&w).unwrap().to_vec(), vec![1.0, 1.0]);
    Ok(())
}

#[test]
fn tensors_attached_to_one_leaf_are_one_variable() -> Result<()> {
    let leaf = Leaf::new(&[2]);
    let a = Tensor::ones(&[2]).attach(&leaf);
    let b = Tensor::from_vec(vec![3.0, 4.0], &[2])?.attach(&leaf);
    // d/dleaf (sum(a * 2) + sum(b * b)) = 2 + 2b, summed over both uses.
    let loss = a.mul_scalar(2.0).sum_all().add(&b.mul(&b)?.sum_all())?;
    let g = loss.backward()?;
    assert_eq!(g.get_id(leaf.id()).unwrap().to_vec(), vec![8.0, 10.0]);
    assert!(!no_grad(|| Tensor::ones(&[2]).attach(&leaf)).is_tracked());
    Ok(())
}

#[test]
fn deep_graph_does_not_overflow_the_stack() -> Result<()> {
    let x = Tensor::ones(&[4]).requires_grad();
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.add_scalar(1e-6);
    }
    let g = y.sum_all().backward()?;
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![1.0; 4]);
    drop(y);
    Ok(())
}

/// y = 3 x (+ b, optional), as a custom op; keeps the flags its forward was given.
struct Triple(Arc<Mutex<Vec<bool>>>);

impl Triple {
    fn new() -> Triple {
        Triple(Arc::default())
    }
}

impl CustomOp for Triple {
    type Saved = ();
    const NAME: &'static str = "triple";
    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<()> {
        *self.0.lock().unwrap() = needs.to_vec();
        let y = inputs[0].expect("x").mul_scalar(3.0);
        let y = match inputs.get(1).copied().flatten() {
            Some(b) => y.add(b)?,
            None => y,
        };
        Ok((y, needs.iter().any(|&n| n).then_some(())))
    }
    fn backward(&self, _saved: &(), g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let scale = [3.0, 1.0];
        needs
            .iter()
            .zip(scale)
            .map(|(&n, s)| n.then(|| g.mul_scalar(s)))
            .collect()
    }
}

#[test]
fn custom_op_inputs_are_optional_with_a_flag_each() -> Result<()> {
    let x = Tensor::ones(&[2]).requires_grad();
    let b = Tensor::ones(&[2]);
    let run = |inputs: &[Option<&Tensor>]| -> Result<(Tensor, Vec<bool>)> {
        let op = Triple::new();
        let flags = op.0.clone();
        let y = apply_custom(op, inputs)?;
        let seen = flags.lock().unwrap().clone();
        Ok((y, seen))
    };
    // Absent and untracked inputs need nothing; outside recording nothing does.
    assert_eq!(run(&[Some(&x), None])?.1, [true, false]);
    assert_eq!(run(&[Some(&x), Some(&b)])?.1, [true, false]);
    assert_eq!(run(&[Some(&b), Some(&x)])?.1, [false, true]);
    let (y, seen) = no_grad(|| run(&[Some(&x), Some(&b)]))?;
    assert_eq!(seen, [false, false]);
    assert!(!y.is_tracked());
    // Only the flagged input gets a gradient.
    let (y, _) = run(&[Some(&b), Some(&x)])?;
    assert_eq!(y.to_vec(), vec![4.0, 4.0]);
    let g = y.sum_all().backward()?;
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![1.0, 1.0]);
    assert!(g.get(&b).is_none());
    Ok(())
}

#[test]
fn custom_op_plugs_into_autograd() -> Result<()> {
    let x = Tensor::randn(&[4], &mut Rng::new(0)).requires_grad();
    let y = apply_custom(Triple::new(), &[Some(&x)])?;
    assert!(y.is_tracked());
    let g = y.mul(&x)?.sum_all().backward()?; // d/dx 3x^2 = 6x
    for (gv, xv) in g.get(&x).unwrap().to_vec().iter().zip(x.to_vec()) {
        assert!((gv - 6.0 * xv).abs() < 1e-5);
    }
    let z = no_grad(|| apply_custom(Triple::new(), &[Some(&x)]))?;
    assert!(!z.is_tracked());
    Ok(())
}

#[test]
fn backward_needs_a_scalar_or_a_matching_gradient() {
    let x = Tensor::ones(&[2, 2]).requires_grad();
    let y = x.exp();
    assert!(y.backward().is_err());
    assert!(y.backward_with(&Tensor::ones(&[3])).is_err());
    assert!(y.backward_with(&Tensor::ones(&[2, 2])).is_ok());
}

#[test]
fn gradients_accumulate_across_micro_batches() -> Result<()> {
    let w = Tensor::ones(&[2]).requires_grad();
    let mut total = w.mul_scalar(2.0).sum_all().backward()?;
    total.accumulate(w.mul_scalar(3.0).sum_all().backward()?);
    assert_eq!(total.get(&w).unwrap().to_vec(), vec![5.0, 5.0]);
    Ok(())
}
