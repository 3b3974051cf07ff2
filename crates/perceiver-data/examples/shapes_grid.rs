//! Writes a grid of `shapes` samples to a PGM image (for looking at the task).
//! `cargo run -p perceiver-data --example shapes_grid -- OUT.pgm`
use perceiver_data::image::{Shapes, ShapesConfig};
use perceiver_data::{Dataset, Split};
fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shapes.pgm".into());
    let ds = Shapes::new(ShapesConfig::split(Split::Train, 48)).expect("config");
    let (cols, size) = (12, 32);
    let rows = 4;
    let mut img = vec![0u8; rows * size * cols * size];
    for i in 0..rows * cols {
        let s = ds.get(i).expect("sample");
        let (r, c) = (i / cols, i % cols);
        for y in 0..size {
            for x in 0..size {
                let v = s.values[y * size + x].clamp(0.0, 1.0);
                img[(r * size + y) * cols * size + c * size + x] = (v * 255.0) as u8;
            }
        }
        eprint!("{} ", s.label);
    }
    let mut f = format!("P5\n{} {}\n255\n", cols * size, rows * size).into_bytes();
    f.extend(img);
    std::fs::write(out, f).expect("write");
}
