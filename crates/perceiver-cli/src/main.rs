//! The `perceiver` command-line tool.
//!
//! It will grow `train`, `eval`, `predict` and `info` subcommands as the model and data crates
//! land. For now it prints its version.

fn main() {
    println!("perceiver {}", env!("CARGO_PKG_VERSION"));
}
