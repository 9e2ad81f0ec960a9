//! From a generator's images to a descriptor's input tensor.
//!
//! Generators and descriptors are trained apart and disagree on everything:
//! value range, size, channel count and order, normalisation. This module
//! turns a batch of generator images (NCHW float32) into a batch the
//! descriptor accepts, in these steps, each image on its own:
//!
//! 1. map the generator's value range (default `[-1, 1]`) to pixel values in
//!    `[0, 1]`, clamping what falls outside;
//! 2. keep a centre crop (a fraction of each side; 1 keeps everything);
//! 3. resize each channel to the descriptor's size with a triangle (bilinear)
//!    filter from the `image` crate, with pixel centres at half-integers. When
//!    enlarging this is plain bilinear interpolation with edges clamped; when
//!    shrinking the filter widens so every source pixel counts (as PIL does),
//!    which avoids the aliasing of plain bilinear sampling at large ratios
//!    (a 1024-pixel face to 112);
//! 4. match channels: grey to RGB by copying, RGB to grey by the ITU-R 601
//!    luma weights, and reorder RGB to BGR when asked;
//! 5. optionally mirror left to right (the flip trick embeds both);
//! 6. scale to the descriptor's convention, with `p` the pixel in `[0, 255]`:
//!    `(p - 127.5) / 127.5` (the ArcFace default), `p / 255`, ImageNet's
//!    `(p / 255 - mean) / std`, or `p` itself.

use image::imageops::{FilterType, resize};
use image::{ImageBuffer, Luma};
use ndarray::{Array4, ArrayView2, ArrayView4, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How descriptor inputs are scaled from pixels `p` in `[0, 255]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputScale {
    /// `(p - 127.5) / 127.5`, in `[-1, 1]` (ArcFace and most face models).
    Arcface,
    /// `p / 255`, in `[0, 1]`.
    Unit,
    /// `(p / 255 - mean) / std` with ImageNet's per-channel mean and std.
    Imagenet,
    /// `p` itself, in `[0, 255]` (models exported with their own
    /// normalisation inside).
    Pixels,
}

/// Order of the colour channels the descriptor expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// ImageNet's channel means and standard deviations, in RGB order.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// ITU-R BT.601 luma weights, in RGB order.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// The conversion from generator images to descriptor inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Values of the generator's output that map to black and white.
    pub generator_range: (f32, f32),
    /// Fraction of each side kept by the centre crop, in `(0, 1]`.
    pub crop: f32,
    pub channel_order: ChannelOrder,
    pub input_scale: InputScale,
    /// Embed each image and its mirror image, and combine (the authors'
    /// flip trick).
    pub flip: bool,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            generator_range: (-1.0, 1.0),
            crop: 1.0,
            channel_order: ChannelOrder::Rgb,
            input_scale: InputScale::Arcface,
            flip: false,
        }
    }
}

impl Preprocess {
    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = self.generator_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(format!(
                "generator range {lo}..{hi} must be finite and increasing"
            ));
        }
        if !(self.crop > 0.0 && self.crop <= 1.0) {
            return Err(format!("crop {} must be in (0, 1]", self.crop));
        }
        Ok(())
    }

    /// Converts a batch of generator images `(n, c, h, w)` into descriptor
    /// inputs `(n, channels, height, width)`; `mirror` flips them left to
    /// right. Channel counts other than 1 and 3 are refused by the caller.
    pub fn apply(
        &self,
        images: ArrayView4<'_, f32>,
        channels: usize,
        height: usize,
        width: usize,
        mirror: bool,
    ) -> Array4<f32> {
        let n = images.len_of(Axis(0));
        let mut out = Array4::<f32>::zeros((n, channels, height, width));
        // Images are independent: one per task, over all cores.
        let pairs = out
            .outer_iter_mut()
            .into_par_iter()
            .zip(images.outer_iter().into_par_iter());
        pairs.for_each(|(mut target, image)| {
            let planes: Vec<ndarray::Array2<f32>> = image
                .outer_iter()
                .map(|plane| self.resize_plane(plane, height, width))
                .collect();
            for c in 0..channels {
                // The colour this output channel carries, in RGB order.
                let colour = match self.channel_order {
                    ChannelOrder::Rgb => c,
                    ChannelOrder::Bgr => 2 - c.min(2),
                };
                let plane = match (planes.len(), channels) {
                    (1, _) => planes[0].clone(),
                    (3, 1) => &planes[0] * LUMA[0] + &planes[1] * LUMA[1] + &planes[2] * LUMA[2],
                    _ => planes[colour].clone(),
                };
                let mut dest = target.index_axis_mut(Axis(0), c);
                for ((y, x), value) in dest.indexed_iter_mut() {
                    let source_x = if mirror { width - 1 - x } else { x };
                    *value = self.scale(plane[[y, source_x]], colour, channels);
                }
            }
        });
        out
    }

    /// Range mapping, crop and resize of one channel; values in `[0, 1]`.
    fn resize_plane(
        &self,
        plane: ArrayView2<'_, f32>,
        height: usize,
        width: usize,
    ) -> ndarray::Array2<f32> {
        let (lo, hi) = self.generator_range;
        let (h, w) = plane.dim();
        let crop_h = ((h as f32 * self.crop).round() as usize).clamp(1, h);
        let crop_w = ((w as f32 * self.crop).round() as usize).clamp(1, w);
        let (top, left) = ((h - crop_h) / 2, (w - crop_w) / 2);
        let cropped = plane.slice(s![top..top + crop_h, left..left + crop_w]);
        let unit: Vec<f32> = cropped
            .iter()
            .map(|&v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0))
            .collect();
        if (crop_h, crop_w) == (height, width) {
            return ndarray::Array2::from_shape_vec((height, width), unit).expect("sizes match");
        }
        let source =
            ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(crop_w as u32, crop_h as u32, unit)
                .expect("buffer holds the image");
        let resized = resize(&source, width as u32, height as u32, FilterType::Triangle);
        ndarray::Array2::from_shape_vec((height, width), resized.into_raw())
            .expect("resize gives the asked size")
    }

    /// Scales a value in `[0, 1]` to the descriptor's convention.
    fn scale(&self, unit: f32, colour: usize, channels: usize) -> f32 {
        let pixel = unit * 255.0;
        match self.input_scale {
            InputScale::Arcface => (pixel - 127.5) / 127.5,
            InputScale::Unit => unit,
            InputScale::Pixels => pixel,
            InputScale::Imagenet => {
                if channels == 3 {
                    (unit - IMAGENET_MEAN[colour]) / IMAGENET_STD[colour]
                } else {
                    let mean: f32 = IMAGENET_MEAN.iter().zip(LUMA).map(|(m, l)| m * l).sum();
                    let std: f32 = IMAGENET_STD.iter().zip(LUMA).map(|(s, l)| s * l).sum();
                    (unit - mean) / std
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array4, array};

    /// Enlarging 2x2 to 4x4: output pixel centres fall at source
    /// coordinates -0.25, 0.25, 0.75, 1.25 (half-pixel centres), which
    /// interpolate with weights (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1)
    /// once the edges are clamped. Worked out by hand from 0 and 1:
    /// 0, 0.25, 0.75, 1 along each axis.
    #[test]
    fn test_bilinear_enlargement_by_hand() {
        let pre = Preprocess {
            generator_range: (0.0, 1.0),
            input_scale: InputScale::Unit,
            ..Default::default()
        };
        let image = Array4::from_shape_vec((1, 1, 2, 2), vec![0.0, 1.0, 0.0, 1.0]).unwrap();
        let out = pre.apply(image.view(), 1, 4, 4, false);
        let row = [0.0, 0.25, 0.75, 1.0];
        for y in 0..4 {
            for x in 0..4 {
                assert!((out[[0, 0, y, x]] - row[x]).abs() < 1e-6, "{out:?}");
            }
        }
        // Along the other axis, and mirrored.
        let image = Array4::from_shape_vec((1, 1, 2, 2), vec![0.0, 0.0, 1.0, 1.0]).unwrap();
        let out = pre.apply(image.view(), 1, 4, 4, true);
        for y in 0..4 {
            for x in 0..4 {
                assert!((out[[0, 0, y, x]] - row[y]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn test_range_scale_and_channels_by_hand() {
        // One pixel per channel, generator range [-1, 1], ArcFace scaling:
        // g -> p = (g + 1) * 127.5 -> (p - 127.5) / 127.5 = g, so the
        // values pass through, with values outside [-1, 1] clamped.
        let pre = Preprocess::default();
        let image = Array4::from_shape_vec((1, 3, 1, 1), vec![-1.0, 0.5, 2.0]).unwrap();
        let rgb = pre.apply(image.view(), 3, 1, 1, false);
        assert_eq!(
            rgb.iter().copied().collect::<Vec<_>>(),
            vec![-1.0, 0.5, 1.0]
        );
        let bgr = Preprocess {
            channel_order: ChannelOrder::Bgr,
            ..pre
        }
        .apply(image.view(), 3, 1, 1, false);
        assert_eq!(
            bgr.iter().copied().collect::<Vec<_>>(),
            vec![1.0, 0.5, -1.0]
        );
        // RGB to grey: luma of units (0, 0.75, 1) = 0.587 * 0.75 + 0.114.
        let unit = Preprocess {
            input_scale: InputScale::Unit,
            ..pre
        };
        let grey = unit.apply(image.view(), 1, 1, 1, false);
        assert!((grey[[0, 0, 0, 0]] - (0.587 * 0.75 + 0.114)).abs() < 1e-6);
        // Grey to RGB copies; pixel scale gives 0..255.
        let one = Array4::from_shape_vec((1, 1, 1, 1), vec![0.0]).unwrap();
        let pixels = Preprocess {
            input_scale: InputScale::Pixels,
            ..pre
        }
        .apply(one.view(), 3, 1, 1, false);
        assert_eq!(pixels.iter().copied().collect::<Vec<_>>(), vec![127.5; 3]);
        // ImageNet: (0.5 - mean) / std per channel.
        let imagenet = Preprocess {
            input_scale: InputScale::Imagenet,
            ..pre
        }
        .apply(one.view(), 3, 1, 1, false);
        for c in 0..3 {
            assert!(
                (imagenet[[0, c, 0, 0]] - (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).abs() < 1e-6
            );
        }
    }

    #[test]
    fn test_centre_crop_keeps_the_middle() {
        let pre = Preprocess {
            generator_range: (0.0, 1.0),
            input_scale: InputScale::Unit,
            crop: 0.5,
            ..Default::default()
        };
        let values: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let image = Array4::from_shape_vec((1, 1, 4, 4), values.clone()).unwrap();
        let out = pre.apply(image.view(), 1, 2, 2, false);
        let want = array![[values[5], values[6]], [values[9], values[10]]];
        let got = out.index_axis(Axis(0), 0).index_axis(Axis(0), 0).to_owned();
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-7),
            "{got:?}"
        );
    }

    #[test]
    fn test_validate_names_the_bad_setting() {
        let bad = Preprocess {
            crop: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("crop"));
        let bad = Preprocess {
            generator_range: (1.0, 1.0),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("range"));
    }
}
