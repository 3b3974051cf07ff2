//! `contiguous`: a row-major copy when the layout is not already row-major, else the tensor
//! itself. The rule passes the gradient through.

use crate::autograd::record;
use crate::Tensor;

struct ContiguousBackward;

backward!(ContiguousBackward, "contiguous", |_saved, g, _needs| vec![
    Some(g.detach())
]);

impl Tensor {
    /// This tensor with a row-major layout (copies only when needed; keeps the graph).
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let out = Tensor::from_parts(self.to_vec(), self.shape());
        record(out, &[self], |_| ContiguousBackward)
    }
}
