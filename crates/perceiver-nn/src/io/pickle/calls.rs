//! The allow-listed globals of the restricted unpickler and what each does when applied: the
//! whole of what a pickle can "call". Tensors are checked to lie inside their storages here.

use super::Value;
use crate::io::Dtype;
use std::rc::Rc;

/// One storage of the archive, read whole: `numel` elements of `dtype`, little-endian.
pub(crate) struct Storage {
    pub(crate) dtype: Dtype,
    pub(crate) key: String,
    pub(crate) numel: usize,
    pub(crate) bytes: Vec<u8>,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage, checked to lie
/// inside it.
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<Storage>,
    pub(crate) offset: usize,
    pub(crate) size: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

/// The globals a file may name, each interpreted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Callable {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    StorageType(Dtype),
}

/// The allow-list: `(module, name, meaning)`.
const ALLOWED: [(&str, &str, Callable); 8] = [
    ("collections", "OrderedDict", Callable::OrderedDict),
    (
        "torch._utils",
        "_rebuild_tensor_v2",
        Callable::RebuildTensorV2,
    ),
    (
        "torch._utils",
        "_rebuild_parameter",
        Callable::RebuildParameter,
    ),
    ("torch", "FloatStorage", Callable::StorageType(Dtype::F32)),
    ("torch", "HalfStorage", Callable::StorageType(Dtype::F16)),
    (
        "torch",
        "BFloat16Storage",
        Callable::StorageType(Dtype::BF16),
    ),
    ("torch", "DoubleStorage", Callable::StorageType(Dtype::F64)),
    ("torch", "LongStorage", Callable::StorageType(Dtype::I64)),
];

pub(super) fn lookup_global(module: &str, name: &str) -> Result<Callable, String> {
    ALLOWED
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|&(_, _, c)| c)
        .ok_or_else(|| {
            let allowed: Vec<String> = ALLOWED.iter().map(|(m, n, _)| format!("{m}.{n}")).collect();
            format!(
                "global `{module}.{name}` is not allowed (a state dict needs only {})",
                allowed.join(", ")
            )
        })
}

/// BUILD on a dict: the only state accepted is none, or a dict whose keys are all `_metadata`
/// (the per-module versions a state dict carries), which is ignored.
pub(super) fn build(target: &Value, state: &Value) -> Result<(), String> {
    if !matches!(target, Value::Dict(_)) {
        return Err(format!(
            "BUILD on {}; only dicts are built",
            target.a_kind()
        ));
    }
    match state {
        Value::None => Ok(()),
        Value::Dict(s) => {
            let s = s.borrow();
            match s.items.iter().find(|(k, _)| &**k != "_metadata") {
                None => Ok(()),
                Some((k, _)) => Err(format!(
                    "BUILD sets attribute `{k}`; only `_metadata` is accepted"
                )),
            }
        }
        other => Err(format!("BUILD with {} state", other.a_kind())),
    }
}

/// A non-negative int that fits a usize.
fn index(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("{what} is {i}, out of range")),
        other => Err(format!("{what} is {}, not an int", other.a_kind())),
    }
}

fn index_tuple(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(t) => t
            .items
            .iter()
            .enumerate()
            .map(|(i, x)| index(x, &format!("{what}[{i}]")))
            .collect(),
        other => Err(format!("{what} is {}, not a tuple", other.a_kind())),
    }
}

/// REDUCE: applies an allow-listed callable to its argument tuple.
pub(super) fn reduce(f: &Value, args: &Value) -> Result<Value, String> {
    let Value::Global(f) = f else {
        return Err(format!("calls {}, not an allowed global", f.a_kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("arguments are {}, not a tuple", args.a_kind()));
    };
    let args = args.items.as_slice();
    match (f, args) {
        (Callable::OrderedDict, []) => Ok(Value::Dict(Rc::default())),
        (
            Callable::RebuildTensorV2,
            [storage, offset, size, stride, requires_grad, hooks, rest @ ..],
        ) if rest.len() <= 1 => {
            let Value::Storage(storage) = storage else {
                return Err(format!(
                    "_rebuild_tensor_v2: the storage is {}",
                    storage.a_kind()
                ));
            };
            if !matches!(requires_grad, Value::Bool) {
                return Err("_rebuild_tensor_v2: requires_grad is not a bool".into());
            }
            if !matches!(hooks, Value::Dict(_) | Value::None)
                || !matches!(rest, [] | [Value::Dict(_) | Value::None])
            {
                return Err("_rebuild_tensor_v2: backward hooks or metadata are not dicts".into());
            }
            let offset = index(offset, "_rebuild_tensor_v2: storage offset")?;
            let size = index_tuple(size, "_rebuild_tensor_v2: size")?;
            let stride = index_tuple(stride, "_rebuild_tensor_v2: stride")?;
            let t = TensorRef {
                storage: storage.clone(),
                offset,
                size,
                stride,
            };
            check_extent(&t)?;
            Ok(Value::Tensor(Rc::new(t)))
        }
        (Callable::RebuildParameter, [tensor @ Value::Tensor(_), Value::Bool, Value::Dict(_)]) => {
            Ok(tensor.clone())
        }
        (f, args) => {
            let kinds: Vec<String> = args.iter().map(Value::a_kind).collect();
            Err(format!(
                "{} cannot be applied to ({})",
                callable_name(*f),
                kinds.join(", ")
            ))
        }
    }
}

fn callable_name(c: Callable) -> String {
    ALLOWED
        .iter()
        .find(|(_, _, x)| *x == c)
        .map(|(m, n, _)| format!("{m}.{n}"))
        .unwrap_or_default()
}

/// Checks, with checked arithmetic, that the view lies inside its storage.
fn check_extent(t: &TensorRef) -> Result<(), String> {
    let key = &t.storage.key;
    if t.size.len() != t.stride.len() {
        return Err(format!(
            "_rebuild_tensor_v2: size {:?} and stride {:?} differ in length",
            t.size, t.stride
        ));
    }
    let overflow = || {
        format!(
            "_rebuild_tensor_v2: size {:?} stride {:?} overflow",
            t.size, t.stride
        )
    };
    if t.size.contains(&0) {
        // No elements: only the offset must lie within the storage.
        if t.offset > t.storage.numel {
            return Err(format!(
                "_rebuild_tensor_v2: offset {} lies beyond storage `{key}` of {} elements",
                t.offset, t.storage.numel
            ));
        }
        return Ok(());
    }
    let mut last = t.offset;
    for (&n, &s) in t.size.iter().zip(&t.stride) {
        let reach = (n - 1).checked_mul(s).ok_or_else(overflow)?;
        last = last.checked_add(reach).ok_or_else(overflow)?;
    }
    if last >= t.storage.numel {
        return Err(format!(
            "_rebuild_tensor_v2: size {:?} stride {:?} at offset {} reaches element {last} of storage `{key}`, which has {}",
            t.size, t.stride, t.offset, t.storage.numel
        ));
    }
    Ok(())
}
