//! Parameters: names in errors, updates seen by later forwards.

use perceiver_nn::Param;
use perceiver_tensor::{Error, Result, Tensor};

#[test]
fn missing_gradient_is_an_error_naming_the_parameter() -> Result<()> {
    let used = Param::new("layers.0.to_q.weight", Tensor::ones(&[2]));
    let unused = Param::new("layers.0.to_k.weight", Tensor::ones(&[2]));
    let loss = used.tensor().sum_all();
    let grads = loss.backward()?;
    assert!(used.grad(&grads).is_ok());
    let err = unused.grad(&grads).unwrap_err();
    assert!(matches!(err, Error::NoGradient { .. }));
    assert!(err.to_string().contains("layers.0.to_k.weight"), "{err}");
    Ok(())
}

#[test]
fn param_updates_are_seen_by_later_forwards() -> Result<()> {
    let p = Param::new("w", Tensor::ones(&[3]));
    let before = p.tensor();
    p.update(|w| w.iter_mut().for_each(|v| *v = 5.0));
    assert_eq!(p.tensor().to_vec(), vec![5.0; 3]);
    // a graph that still holds the old value keeps it (copy-on-write)
    assert_eq!(before.to_vec(), vec![1.0; 3]);
    Ok(())
}
