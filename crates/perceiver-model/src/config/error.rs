//! What is wrong with a configuration.

use perceiver_pos::PositionConfigError;

/// A configuration error, naming the field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A size that must be positive is zero.
    #[error("`{field}` must be positive")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// An attention width is not a multiple of its number of heads.
    #[error("`{field}` = {width} is not a multiple of the {heads} heads")]
    NotDivisible {
        /// The field.
        field: &'static str,
        /// The width.
        width: usize,
        /// The number of heads.
        heads: usize,
    },
    /// A probability or epsilon out of range.
    #[error("`{field}` = {value} is out of range ({expected})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: f32,
        /// The allowed range.
        expected: &'static str,
    },
    /// Fields that contradict each other.
    #[error("`{field}`: {reason}")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A size is absurd: a product of sizes overflows or exceeds
    /// [`PerceiverConfig::MAX_ELEMENTS`](super::PerceiverConfig::MAX_ELEMENTS) elements, or a layer count exceeds
    /// [`PerceiverConfig::MAX_LAYERS`](super::PerceiverConfig::MAX_LAYERS).
    #[error("`{field}` is too large: {reason}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// The product or count and the limit it breaks.
        reason: String,
    },
    /// The position encoding is invalid.
    #[error("`position_encoding`: {0}")]
    Position(#[from] PositionConfigError),
}
