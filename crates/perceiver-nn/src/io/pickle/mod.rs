//! A restricted unpickler for the state dicts that `torch.save` writes.
//!
//! It is an interpreter of a small subset of the pickle opcodes, not Python's machine: the only
//! "callables" are an allow-list of names (`calls`) whose effect is written here, so a file
//! can build dicts, lists, tuples, numbers, strings and tensor views, and nothing else. Every other
//! opcode and every other global is refused with an error naming it and its byte offset.
//!
//! Limits keep a hostile file's cost proportional to its size: strings and lengths are checked
//! against the bytes left before anything is allocated, the stack, the memo and the mark nesting
//! are capped, and tuples nest at most `MAX_DEPTH` deep.

use super::Dtype;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Most values on the stack at once.
const MAX_STACK: usize = 1 << 22;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 22;
/// Most open MARKs at once.
const MAX_MARKS: usize = 256;
/// Deepest tuple nesting.
const MAX_DEPTH: u32 = 64;
/// Longest `module name` line of a GLOBAL opcode.
const MAX_GLOBAL_LINE: usize = 256;

mod calls;

use calls::{build, lookup_global, reduce, Callable};
pub(crate) use calls::{Storage, TensorRef};

/// A dict with string keys, in insertion order (a repeated key keeps its first place).
#[derive(Default)]
struct Dict {
    index: HashMap<Rc<str>, usize>,
    items: Vec<(Rc<str>, Value)>,
}

impl Dict {
    fn set(&mut self, key: Rc<str>, value: Value) {
        match self.index.get(&key) {
            Some(&i) => self.items[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.items.len());
                self.items.push((key, value));
            }
        }
    }
}

/// A tuple and how deeply tuples nest inside it (1 for a tuple of non-tuples).
struct Tuple {
    depth: u32,
    items: Vec<Value>,
}

/// A value of the machine. Booleans and floats keep no value: no allowed callable reads one.
#[derive(Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Tuple(Rc<Tuple>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Dict>>),
    Global(Callable),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// What the value is with its article ("an int", "a dict", "None"), for error messages
    /// (never its contents).
    fn a_kind(&self) -> String {
        let kind = self.kind();
        match kind {
            "None" => kind.to_string(),
            "int" => format!("an {kind}"),
            _ => format!("a {kind}"),
        }
    }

    /// What the value is.
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The name of opcode `op`, for error messages: the supported ones and the rest of pickle's.
fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'}' => "EMPTY_DICT",
        b')' => "EMPTY_TUPLE",
        b']' => "EMPTY_LIST",
        b'(' => "MARK",
        b't' => "TUPLE",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'X' => "BINUNICODE",
        0x8c => "SHORT_BINUNICODE",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        b'N' => "NONE",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'G' => "BINFLOAT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        0x94 => "MEMOIZE",
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'Q' => "BINPERSID",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b'b' => "BUILD",
        b'.' => "STOP",
        // Pickle opcodes this reader refuses.
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'L' => "LONG",
        0x8b => "LONG4",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        0x8d => "BINUNICODE8",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'd' => "DICT",
        b'l' => "LIST",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        b'p' => "PUT",
        b'g' => "GET",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'P' => "PERSID",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        _ => return None,
    })
}

/// Resolves a persistent id `('storage', type, key, location, numel)` to the storage read from
/// the archive: `load(dtype, key, numel)`.
pub(crate) type LoadStorage<'a> = dyn FnMut(Dtype, &str, u64) -> Result<Rc<Storage>, String> + 'a;

struct Machine<'a, 'l> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Every list and dict made, emptied when the machine is dropped so that reference cycles
    /// built through the memo are broken.
    containers: Vec<Value>,
    load: &'l mut LoadStorage<'l>,
}

impl Drop for Machine<'_, '_> {
    fn drop(&mut self) {
        for c in &self.containers {
            match c {
                Value::List(l) => drop(std::mem::take(&mut *l.borrow_mut())),
                Value::Dict(d) => drop(std::mem::take(&mut *d.borrow_mut())),
                _ => {}
            }
        }
    }
}

/// Runs the pickle `data` and returns its result as a state dict: the (string) keys and tensors
/// in the dict's order. Errors name the opcode and its byte offset.
pub(crate) fn load_state_dict(
    data: &[u8],
    load: &mut LoadStorage<'_>,
) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        containers: Vec::new(),
        load,
    };
    let result = m.run()?;
    let Value::Dict(dict) = result else {
        return Err(format!(
            "the pickle holds {}, not a state dict (a dict of tensors)",
            result.a_kind()
        ));
    };
    let dict = dict.borrow();
    dict.items
        .iter()
        .map(|(k, v)| match v {
            Value::Tensor(t) => Ok((k.to_string(), t.clone())),
            other => Err(format!(
                "state-dict entry `{k}` is {}, not a tensor",
                other.a_kind()
            )),
        })
        .collect()
}

impl Machine<'_, '_> {
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let Some(&op) = self.data.get(at) else {
                return Err(format!(
                    "byte {at}: the pickle ends without STOP (truncated)"
                ));
            };
            self.pos += 1;
            let name = opcode_name(op);
            match self.step(op) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(msg) => {
                    let what = match name {
                        Some(n) => format!("opcode {n} (0x{op:02x})"),
                        None => format!("unknown opcode 0x{op:02x}"),
                    };
                    return Err(format!("byte {at}: {what}: {msg}"));
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "needs {n} bytes but {} are left (truncated)",
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn push(&mut self, v: Value) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("more than {MAX_STACK} values on the stack"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("the stack is empty".into());
        }
        Ok(self.stack.pop().expect("non-empty"))
    }

    fn top(&self) -> Result<&Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("the stack is empty".into());
        }
        Ok(self.stack.last().expect("non-empty"))
    }

    /// The values pushed since the last MARK, which is closed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("no MARK before it")?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value, String> {
        let inner = items
            .iter()
            .map(|v| match v {
                Value::Tuple(t) => t.depth,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        if inner >= MAX_DEPTH {
            return Err(format!("tuples nest more than {MAX_DEPTH} deep"));
        }
        Ok(Value::Tuple(Rc::new(Tuple {
            depth: inner + 1,
            items,
        })))
    }

    fn container(&mut self, v: Value) -> Result<(), String> {
        self.containers.push(v.clone());
        self.push(v)
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| format!("memo entry {idx} was never stored"))?;
        self.push(v)
    }

    fn string(&mut self, len: usize) -> Result<(), String> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|e| format!("string is not UTF-8: {e}"))?;
        let v = Value::Str(Rc::from(s));
        self.push(v)
    }

    /// One opcode; `Some` with the result at STOP.
    fn step(&mut self, op: u8) -> Result<Option<Value>, String> {
        match op {
            0x80 => {
                let [v] = self.take_array::<1>()?;
                if v > 5 {
                    return Err(format!("pickle protocol {v} is not supported (0 to 5 are)"));
                }
            }
            0x95 => {
                let n = u64::from_le_bytes(self.take_array::<8>()?);
                if n > (self.data.len() - self.pos) as u64 {
                    return Err(format!(
                        "frame of {n} bytes is longer than the rest (truncated)"
                    ));
                }
            }
            b'}' => self.container(Value::Dict(Rc::default()))?,
            b']' => self.container(Value::List(Rc::default()))?,
            b')' => {
                let t = self.tuple(Vec::new())?;
                self.push(t)?;
            }
            b'(' => {
                if self.marks.len() >= MAX_MARKS {
                    return Err(format!("more than {MAX_MARKS} nested MARKs"));
                }
                self.marks.push(self.stack.len());
            }
            b't' => {
                let items = self.pop_mark()?;
                let t = self.tuple(items)?;
                self.push(t)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let t = self.tuple(items)?;
                self.push(t)?;
            }
            b'X' => {
                let n = u32::from_le_bytes(self.take_array::<4>()?);
                self.string(n as usize)?;
            }
            0x8c => {
                let [n] = self.take_array::<1>()?;
                self.string(n as usize)?;
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take_array::<4>()?);
                self.push(Value::Int(v as i64))?;
            }
            b'K' => {
                let [v] = self.take_array::<1>()?;
                self.push(Value::Int(v as i64))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array::<2>()?);
                self.push(Value::Int(v as i64))?;
            }
            0x8a => {
                let [n] = self.take_array::<1>()?;
                if n > 8 {
                    return Err(format!("a {n}-byte integer does not fit 64 bits"));
                }
                let bytes = self.take(n as usize)?;
                let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                    [0xff; 8]
                } else {
                    [0; 8]
                };
                buf[..bytes.len()].copy_from_slice(bytes);
                self.push(Value::Int(i64::from_le_bytes(buf)))?;
            }
            b'N' => self.push(Value::None)?,
            0x88 | 0x89 => self.push(Value::Bool)?,
            b'G' => {
                self.take(8)?;
                self.push(Value::Float)?;
            }
            b'q' => {
                let [i] = self.take_array::<1>()?;
                self.memo_put(i as u32)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.take_array::<4>()?);
                self.memo_put(i)?;
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memo_put(i)?;
            }
            b'h' => {
                let [i] = self.take_array::<1>()?;
                self.memo_get(i as u32)?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.take_array::<4>()?);
                self.memo_get(i)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let c = lookup_global(&module, &name)?;
                self.push(Value::Global(c))?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return Err(format!(
                        "needs two strings, got {} and {}",
                        module.a_kind(),
                        name.a_kind()
                    ));
                };
                let c = lookup_global(module, name)?;
                self.push(Value::Global(c))?;
            }
            b'R' => {
                let args = self.pop()?;
                let f = self.pop()?;
                let v = reduce(&f, &args)?;
                self.push(v)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(&pid)?;
                self.push(v)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                set_item(self.top()?, key, value)?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(format!(
                        "an odd number of values ({}) after MARK",
                        items.len()
                    ));
                }
                let target = self.top()?.clone();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    set_item(&target, k, v)?;
                }
            }
            b'a' => {
                let value = self.pop()?;
                list_of(self.top()?)?.borrow_mut().push(value);
            }
            b'e' => {
                let items = self.pop_mark()?;
                list_of(self.top()?)?.borrow_mut().extend(items);
            }
            b'b' => {
                let state = self.pop()?;
                build(self.top()?, &state)?;
            }
            b'.' => return self.pop().map(Some),
            _ => return Err("not supported by this restricted reader of state dicts".into()),
        }
        Ok(None)
    }

    /// A newline-terminated line of a GLOBAL opcode.
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .take(MAX_GLOBAL_LINE + 1)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                format!("no newline within {MAX_GLOBAL_LINE} bytes (truncated or not a name)")
            })?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| "the name is not UTF-8".to_string())?
            .to_string();
        self.pos += end + 1;
        Ok(line)
    }

    fn persistent_load(&mut self, pid: &Value) -> Result<Value, String> {
        let shape = "a persistent id is ('storage', storage type, key, location, numel)";
        let Value::Tuple(t) = pid else {
            return Err(format!("{shape}, got {}", pid.a_kind()));
        };
        match t.items.as_slice() {
            [Value::Str(tag), Value::Global(Callable::StorageType(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" =>
            {
                let numel = u64::try_from(*numel)
                    .map_err(|_| format!("storage `{key}` has a negative size {numel}"))?;
                let s = (self.load)(*dtype, key, numel)?;
                Ok(Value::Storage(s))
            }
            items => {
                let kinds: Vec<String> = items.iter().map(Value::a_kind).collect();
                Err(format!("{shape}, got ({})", kinds.join(", ")))
            }
        }
    }
}

fn set_item(target: &Value, key: Value, value: Value) -> Result<(), String> {
    let Value::Dict(d) = target else {
        return Err(format!("sets an item of {}, not a dict", target.a_kind()));
    };
    let Value::Str(key) = key else {
        return Err(format!(
            "dict key is {}; only string keys are read",
            key.a_kind()
        ));
    };
    d.borrow_mut().set(key, value);
    Ok(())
}

fn list_of(target: &Value) -> Result<&Rc<RefCell<Vec<Value>>>, String> {
    match target {
        Value::List(l) => Ok(l),
        other => Err(format!("appends to {}, not a list", other.a_kind())),
    }
}
