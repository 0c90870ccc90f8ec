//! Thumbnails: the edge image-resizing case.
//!
//! Request: the target width in ASCII digits, a newline, then a JPEG or PNG image.
//! Response: the image resized to that width (aspect ratio kept), encoded as JPEG (quality 80).
//!
//! A JPEG at least twice as wide as the target is decoded at 1/2, 1/4 or 1/8 of its size (DCT
//! scaling: the decoder runs a smaller inverse DCT per block), the smallest scale still at least
//! as wide as the target, then resized from there; fast image services do the same.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};

/// Largest accepted width, in pixels.
pub const MAX_WIDTH: u32 = 4096;

/// Makes the thumbnail for one request.
pub fn thumbnail(request: &[u8]) -> Result<Vec<u8>, String> {
    let newline = request
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("request must start with the width and a newline")?;
    let width: u32 = std::str::from_utf8(&request[..newline])
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|w| (1..=MAX_WIDTH).contains(w))
        .ok_or_else(|| format!("width must be a number from 1 to {MAX_WIDTH}"))?;
    let encoded = &request[newline + 1..];
    let image = match decode_jpeg_scaled(encoded, width) {
        Some(image) => image,
        None => {
            image::load_from_memory(encoded).map_err(|e| format!("cannot decode the image: {e}"))?
        }
    };
    let height = ((u64::from(image.height()) * u64::from(width)) / u64::from(image.width().max(1)))
        .clamp(1, u64::from(MAX_WIDTH)) as u32;
    let resized = image
        .resize_exact(width, height, FilterType::Triangle)
        .to_rgb8();
    let mut out = Cursor::new(Vec::new());
    resized
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 80))
        .map_err(|e| format!("cannot encode JPEG: {e}"))?;
    Ok(out.into_inner())
}

/// Decodes a JPEG at the smallest DCT scale at least `width` pixels wide; `None` if `bytes` is
/// not a JPEG this path handles (the general decoder then takes it, and reports any error).
fn decode_jpeg_scaled(bytes: &[u8], width: u32) -> Option<DynamicImage> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let height = (u64::from(info.height) * u64::from(width) / u64::from(info.width.max(1))).max(1);
    let (w, h) = decoder
        .scale(u16::try_from(width).ok()?, u16::try_from(height).ok()?)
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let (w, h) = (u32::from(w), u32::from(h));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}
