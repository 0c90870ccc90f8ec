//! Thumbnails: the edge image-resizing case.
//!
//! Request: the target width in ASCII digits, a newline, then a JPEG or PNG image.
//! Response: the image resized to that width (aspect ratio kept), encoded as JPEG (quality 80).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

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
    let image = image::load_from_memory(&request[newline + 1..])
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    let height = ((u64::from(image.height()) * u64::from(width)) / u64::from(image.width().max(1)))
        .clamp(1, u64::from(MAX_WIDTH)) as u32;
    let resized = image.resize_exact(width, height, FilterType::Triangle).to_rgb8();
    let mut out = Cursor::new(Vec::new());
    resized
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 80))
        .map_err(|e| format!("cannot encode JPEG: {e}"))?;
    Ok(out.into_inner())
}
