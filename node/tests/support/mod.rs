//! Helpers shared by the node's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod hostile;
pub mod load;
pub mod process;
#[path = "../../../tests/src/raw_codec.rs"]
pub mod raw_codec;

/// A built example guest (`guests/out/NAME.wasm`); run `scripts/build-guests.sh` first.
pub fn built_guest(name: &str) -> Vec<u8> {
    let path = built_guest_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example guests with scripts/build-guests.sh (scripts/test.sh does)",
            path.display()
        )
    })
}

/// Where `scripts/build-guests.sh` puts the example guest `name`.
pub fn built_guest_path(name: &str) -> PathBuf {
    guests_dir().join("out").join(format!("{name}.wasm"))
}

/// A WAT fixture's path.
pub fn fixture_path(name: &str) -> PathBuf {
    guests_dir().join("fixtures").join(name)
}

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests")
}

/// An RGB PNG of `width` x `height` with gradients and a product pattern (compresses like a
/// simple photo rather than a flat fill).
pub fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    rgb_png(width, height, |x, y| {
        [(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8]
    })
}

/// An RGB PNG of `width` x `height` whose pixel at (x, y) is `pixel(x, y)`.
pub fn rgb_png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .flat_map(|(x, y)| pixel(x, y))
        .collect();
    writer.write_image_data(&pixels).expect("png data");
    writer.finish().expect("png end");
    out
}
