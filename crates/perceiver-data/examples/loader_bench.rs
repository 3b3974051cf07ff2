//! Prints loader throughput on the shared data (`PERCEIVER_DATA` or `../shared/data`):
//! `cargo run -p perceiver-data --release --example loader_bench`.

fn main() {
    let dir = perceiver_data::shared_data_dir();
    match perceiver_data::bench::loader_throughput(&dir) {
        Ok(rows) => {
            for (name, value, unit) in rows {
                println!("{name:<28} {value:>10.1} {unit}");
            }
        }
        Err(e) => {
            eprintln!("loader_bench: {e}");
            std::process::exit(1);
        }
    }
}
