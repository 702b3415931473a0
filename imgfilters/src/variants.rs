//! One decode, many outputs: several pipelines ("variants") run on one input, each variant's
//! bytes exactly those of the same pipeline run alone.
//!
//! Trust boundary: the same as [`prepare`](crate::prepare): hostile input bytes, validated
//! pipelines. A failure of one variant (its dry run, a filter, its encoding) is that
//! variant's; only a failure of the input itself (too large, not an image, does not decode) is
//! the whole job's.
//!
//! # One decode per DCT factor
//!
//! Shrink-on-load makes a JPEG's decode depend on the pipeline: a first-op downscale lets
//! libjpeg-turbo decode at 1/2, 1/4 or 1/8, which changes the pixels every later op sees. So
//! the variants are grouped by the DCT factor their *decode plan* gets (the plan: the
//! downscale target their dry run computes from the header, `None` for full size; the factor:
//! the one libjpeg-turbo's decode picks for it, [`jpeg::shrink_factor`]). The decoded pixels
//! depend on that factor alone, so two targets with one factor share a decode and each
//! variant is still exactly its separate job. The input is decoded once per distinct factor,
//! largest decode first (full size, then 1/2, 1/4, 1/8), each decode shared by the variants of
//! its group (their pixels cloned, so a variant's ops cannot disturb another's). Every other
//! format ignores the plan and is decoded exactly once for all variants.

use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::ImageFormat;

use crate::decode::{decode, Decoded};
use crate::error::FilterError;
use crate::filters::output_dimensions;
use crate::jpeg;
use crate::limits::Limits;
use crate::ops::Pipeline;
use crate::pipeline::{filter_decoded, Prepared, RunOptions};
use crate::shrink;

/// Most variants one multi-output job may carry (the protocol's `MAX_VARIANTS`; the two are
/// checked equal where both crates meet, in imgserver).
pub const MAX_VARIANTS: usize = 8;

/// Parses a variant list: 2..=[`MAX_VARIANTS`] op specs separated by `;`, each a valid
/// pipeline. The error names the variant 1-based (`variant 2: …`), the text a client sees.
pub fn parse_variant_list(list: &str) -> Result<Vec<Pipeline>, String> {
    let specs: Vec<&str> = list.split(';').collect();
    if !(2..=MAX_VARIANTS).contains(&specs.len()) {
        return Err(format!(
            "a variant list has 2 to {MAX_VARIANTS} op specs separated by ';', this one has {}",
            specs.len()
        ));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.trim().is_empty() {
                return Err(format!("variant {}: empty op spec", i + 1));
            }
            s.parse::<Pipeline>()
                .map_err(|e| format!("variant {}: {e}", i + 1))
        })
        .collect()
}

/// What a variant's dry run on the header found: its decode plan, or its own failure.
#[derive(Debug, Clone)]
struct Plan {
    target: Result<Option<(u32, u32)>, FilterError>,
}

/// The DCT denominator (1, 2, 4, 8) a decode plan gets for a JPEG of upright size `full`:
/// the decode's pixels depend on it alone. (`shrink_factor` on upright sizes with no
/// orientation is what the decode computes on stored sizes with the image's orientation: a
/// quarter turn swaps both sides of the comparison.)
fn factor(plan: &Option<(u32, u32)>, full: (u32, u32)) -> u32 {
    plan.map_or(1, |t| {
        jpeg::shrink_factor(full.0, full.1, Orientation::NoTransforms, t)
    })
}

/// The groups of variant indices that share a decode, in decoding order: variants whose
/// plans get the same DCT factor for an image of upright size `full` together, full size
/// first, then by increasing factor. A failed dry run is in no group. With `plan_matters`
/// false (not a JPEG) every planned variant is in one group.
fn group(
    plans: &[Option<(u32, u32)>],
    ok: &[bool],
    plan_matters: bool,
    full: (u32, u32),
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..plans.len()).filter(|&i| ok[i]).collect();
    if !plan_matters {
        return if order.is_empty() {
            vec![]
        } else {
            vec![order]
        };
    }
    let key = |i: usize| factor(&plans[i], full);
    order.sort_by_key(|&i| (key(i), i));
    order
        .chunk_by(|&a, &b| key(a) == key(b))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Runs every pipeline of `pipelines` on `input`, calling `each(index, result)` once per
/// variant as soon as it is prepared (decoded and filtered, not yet encoded: the caller
/// encodes and sends it before the next one is made, so only one variant's output image is
/// alive at a time besides the shared decode). Returns the number of decodes done, or the
/// input's own failure (then `each` may have been called for variants that failed their
/// dry run, and no other). An error `each` returns stops the run and is returned.
pub fn prepare_variants<E: From<FilterError>>(
    input: &[u8],
    pipelines: &[Pipeline],
    limits: &Limits,
    options: RunOptions,
    mut each: impl FnMut(usize, Result<Prepared, FilterError>) -> Result<(), E>,
) -> Result<usize, E> {
    for p in pipelines {
        p.validate(limits)?;
    }
    let mut plans: Vec<Plan> = Vec::new();
    let mut full = (0, 0);
    let mut chosen: Option<(u32, u32)> = None;
    let t0 = Instant::now();
    // The first decode: its plan callback dry-runs every variant on the header and picks
    // the first group's plan.
    let first = decode(input, limits, |w, h| {
        full = (w, h);
        plans = pipelines
            .iter()
            .map(|p| Plan {
                target: dry_run(p, w, h, limits, options),
            })
            .collect();
        let ok: Vec<bool> = plans.iter().map(|p| p.target.is_ok()).collect();
        let targets: Vec<_> = plans
            .iter()
            .map(|p| p.target.clone().ok().flatten())
            .collect();
        match group(&targets, &ok, true, full).first() {
            Some(g) => {
                chosen = targets[g[0]];
                Ok(chosen)
            }
            // Every variant fails on the header: decode nothing.
            None => Err(plans
                .iter()
                .find_map(|p| p.target.clone().err())
                .unwrap_or(FilterError::LimitExceeded("no variant".into()))),
        }
    });
    let first_time = t0.elapsed();
    // Variants that failed their dry run are answered first (they cost nothing more).
    for (i, p) in plans.iter().enumerate() {
        if let Err(e) = &p.target {
            each(i, Err(e.clone()))?;
        }
    }
    if plans.iter().all(|p| p.target.is_err()) && !plans.is_empty() {
        return Ok(0);
    }
    let first = first?;
    let ok: Vec<bool> = plans.iter().map(|p| p.target.is_ok()).collect();
    let targets: Vec<_> = plans
        .iter()
        .map(|p| p.target.clone().ok().flatten())
        .collect();
    let plan_matters = first.format == ImageFormat::Jpeg;
    let groups = group(&targets, &ok, plan_matters, full);
    let mut decodes = 0;
    let mut pending = Some((first, first_time));
    for g in groups {
        let (decoded, took) = match pending.take() {
            Some(d) => d,
            None => {
                let t = Instant::now();
                let want = targets[g[0]];
                let d = decode(input, limits, |_, _| Ok(want))?;
                (d, t.elapsed())
            }
        };
        decodes += 1;
        run_group(
            &decoded, &g, pipelines, &targets, full, limits, took, &mut each,
        )?;
    }
    Ok(decodes)
}

/// A variant's dry run on the header, as [`prepare_with`](crate::prepare_with) does it.
fn dry_run(
    p: &Pipeline,
    w: u32,
    h: u32,
    limits: &Limits,
    options: RunOptions,
) -> Result<Option<(u32, u32)>, FilterError> {
    p.ops
        .iter()
        .try_fold((w, h), |(w, h), op| output_dimensions(op, w, h, limits))?;
    if options.shrink_on_load {
        shrink::target(p.ops.first(), w, h, limits)
    } else {
        Ok(None)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_group<E: From<FilterError>>(
    decoded: &Decoded,
    group: &[usize],
    pipelines: &[Pipeline],
    targets: &[Option<(u32, u32)>],
    full: (u32, u32),
    limits: &Limits,
    took: Duration,
    each: &mut impl FnMut(usize, Result<Prepared, FilterError>) -> Result<(), E>,
) -> Result<(), E> {
    for &i in group {
        let mine = Decoded {
            image: decoded.image.clone(),
            format: decoded.format,
            warning: decoded.warning,
            shrink: decoded.shrink,
        };
        let r = filter_decoded(mine, &pipelines[i], targets[i], full, limits, took);
        each(i, r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_grouped_by_dct_factor_full_size_first_then_largest() {
        // A 1600x800 JPEG: 1/8 is 200x100, 1/4 400x200, 1/2 800x400.
        let full = (1600, 800);
        let plans = [
            Some((100, 50)),
            None,
            Some((400, 200)),
            Some((150, 75)),
            None,
            Some((900, 450)),
        ];
        let ok = [true; 6];
        // 100x50 and 150x75 both decode at 1/8; 900x450 is more than 1/2 gives, so full size.
        assert_eq!(
            group(&plans, &ok, true, full),
            vec![vec![1, 4, 5], vec![2], vec![0, 3]]
        );
        // Not a JPEG: the plan does not change the decode, so one group.
        assert_eq!(
            group(&plans, &ok, false, full),
            vec![vec![0, 1, 2, 3, 4, 5]]
        );
        // A variant whose dry run failed is in no group.
        let ok = [true, false, true, true, false, false];
        assert_eq!(group(&plans, &ok, true, full), vec![vec![2], vec![0, 3]]);
        assert!(group(&plans, &[false; 6], false, full).is_empty());
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn a_variant_list_has_two_to_eight_valid_specs() {
        assert_eq!(parse_variant_list("invert;grayscale").unwrap().len(), 2);
        assert_eq!(
            parse_variant_list(&["invert"; 8].join(";")).unwrap().len(),
            8
        );
        assert!(parse_variant_list("invert").unwrap_err().contains("has 1"));
        assert!(parse_variant_list(&["invert"; 9].join(";"))
            .unwrap_err()
            .contains("has 9"));
        assert_eq!(
            parse_variant_list("invert; ").unwrap_err(),
            "variant 2: empty op spec"
        );
        assert!(parse_variant_list("invert;blur:x")
            .unwrap_err()
            .starts_with("variant 2: "));
    }
}
