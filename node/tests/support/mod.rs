//! Helpers shared by the node's integration tests: guest builders and load of their own, the
//! rest from `wasmesh-testkit`.
#![allow(dead_code, unused_imports)]

pub mod hostile;
pub mod load;
#[path = "../../../tests/src/raw_codec.rs"]
pub mod raw_codec;

pub use wasmesh_testkit::fixtures::{built_guest, built_guest_path, fixture_path};
pub use wasmesh_testkit::{Gateway, process, wait};

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
