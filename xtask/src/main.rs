//! Project automation. Run as `cargo xtask <command>`.

fn main() {
    eprintln!("usage: cargo xtask <ci|bench|codegen>");
    std::process::exit(2);
}
