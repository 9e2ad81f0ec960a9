//! Image grids of a sample and its neighbours (`neighbors --grid`), the
//! picture a user looks at to see a collapse: the same identity again and
//! again.
//!
//! Images are never stored; they are regenerated from the latent codes by
//! the model's own black box, so only black boxes that make images (ONNX
//! generators) can be drawn.

use std::path::Path;

use image::{Rgb, RgbImage, imageops};
use ndarray::{ArrayView3, ArrayView4};

use crate::error::{Error, Result};

/// Width of the frame around the query and of the gaps between tiles.
const BORDER: u32 = 3;
/// Tiles smaller than this are enlarged (nearest neighbour) to it.
const MIN_TILE: u32 = 96;
/// Colour of the query's frame; other tiles have a grey one.
const QUERY_FRAME: Rgb<u8> = Rgb([220, 40, 40]);
const FRAME: Rgb<u8> = Rgb([128, 128, 128]);

/// Draws `images` (NCHW, values in `[0, 1]`, 1 or 3 channels) in a grid of
/// `columns` columns and writes it as a PNG. With `query_first`, the first
/// image gets a coloured frame.
pub fn write_grid(
    images: ArrayView4<'_, f32>,
    columns: usize,
    query_first: bool,
    path: &Path,
) -> Result<()> {
    let (n, _, h, w) = images.dim();
    if n == 0 {
        return Err(Error::InvalidArgument("no images to draw".into()));
    }
    let columns = columns.clamp(1, n) as u32;
    let rows = (n as u32).div_ceil(columns);
    let scale = MIN_TILE.div_ceil(h.max(w).max(1) as u32).max(1);
    let (tile_w, tile_h) = (w as u32 * scale, h as u32 * scale);
    let cell_w = tile_w + 2 * BORDER;
    let cell_h = tile_h + 2 * BORDER;
    let mut canvas = RgbImage::from_pixel(columns * cell_w, rows * cell_h, Rgb([255, 255, 255]));
    for (i, image) in images.outer_iter().enumerate() {
        let tile = to_rgb(image);
        let tile = imageops::resize(&tile, tile_w, tile_h, imageops::FilterType::Nearest);
        let (x0, y0) = ((i as u32 % columns) * cell_w, (i as u32 / columns) * cell_h);
        let frame = if query_first && i == 0 {
            QUERY_FRAME
        } else {
            FRAME
        };
        for y in 0..cell_h {
            for x in 0..cell_w {
                let inside =
                    x >= BORDER && x < BORDER + tile_w && y >= BORDER && y < BORDER + tile_h;
                let pixel = if inside {
                    *tile.get_pixel(x - BORDER, y - BORDER)
                } else {
                    frame
                };
                canvas.put_pixel(x0 + x, y0 + y, pixel);
            }
        }
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::VectorFile {
            path: path.to_path_buf(),
            reason: format!("cannot write the grid: {e}"),
        })
}

/// One CHW image in `[0, 1]` as 8-bit RGB (grey copied to all channels).
fn to_rgb(image: ArrayView3<'_, f32>) -> RgbImage {
    let (c, h, w) = image.dim();
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        if c >= 3 {
            Rgb([
                byte(image[[0, y, x]]),
                byte(image[[1, y, x]]),
                byte(image[[2, y, x]]),
            ])
        } else {
            let g = byte(image[[0, y, x]]);
            Rgb([g, g, g])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_grid_places_tiles_and_frames_the_query() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        // Three 2x2 grey images: black, white, black.
        let mut images = ndarray::Array4::<f32>::zeros((3, 1, 2, 2));
        images.index_axis_mut(ndarray::Axis(0), 1).fill(1.0);
        write_grid(images.view(), 2, true, &path).unwrap();
        let grid = image::open(&path).unwrap().to_rgb8();
        let scale = MIN_TILE.div_ceil(2);
        let cell = 2 * scale + 2 * BORDER;
        assert_eq!(grid.dimensions(), (2 * cell, 2 * cell));
        assert_eq!(*grid.get_pixel(0, 0), QUERY_FRAME);
        assert_eq!(*grid.get_pixel(BORDER + 1, BORDER + 1), Rgb([0, 0, 0]));
        assert_eq!(*grid.get_pixel(cell, 0), FRAME);
        assert_eq!(
            *grid.get_pixel(cell + BORDER + 1, BORDER + 1),
            Rgb([255, 255, 255])
        );
        // The fourth cell is empty.
        assert_eq!(
            *grid.get_pixel(cell + BORDER + 1, cell + BORDER + 1),
            Rgb([255, 255, 255])
        );
    }
}
