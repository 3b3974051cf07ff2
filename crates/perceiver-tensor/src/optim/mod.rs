//! Optimizers, gradient clipping and learning-rate schedules (in progress).
