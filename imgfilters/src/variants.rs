//! One decode, many outputs: several pipelines ("variants") run on one input, each variant's
//! bytes exactly those of the same pipeline run alone.
//!
//! Trust boundary: the same as [`prepare`](crate::prepare): hostile input bytes, validated
//! pipelines. A failure of one variant (its dry run, a filter, its encoding) is that
//! variant's; only a failure of the input itself (too large, not an image, does not decode) is
//! the whole job's.
//!
//! # One decode per distinct decode plan
//!
//! Shrink-on-load makes a JPEG's decode depend on the pipeline: a first-op downscale lets
//! libjpeg-turbo decode at 1/2, 1/4 or 1/8, which changes the pixels every later op sees. So
//! the variants are grouped by their *decode plan*, the downscale target their dry run
//! computes from the header (`None`: full size), and the input is decoded once per distinct
//! plan, largest first (full size, then the largest target), each decode shared by the
//! variants of its group (their pixels cloned, so a variant's ops cannot disturb another's).
//! Every other format ignores the plan and is decoded exactly once for all variants. (Two
//! JPEG targets that happen to pick the same DCT factor still decode twice: the factor is the
//! decoder's choice; grouping on it would save that decode, at no change of bytes.)

use std::time::{Duration, Instant};

use image::ImageFormat;

use crate::decode::{decode, Decoded};
use crate::error::FilterError;
use crate::filters::output_dimensions;
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

/// The order of decode plans: full size first, then larger targets before smaller ones.
fn plan_key(t: &Option<(u32, u32)>) -> (bool, u64) {
    match t {
        None => (false, 0),
        Some((w, h)) => (true, u64::MAX - u64::from(*w) * u64::from(*h)),
    }
}

/// The groups of variant indices that share a decode, in decoding order: variants with equal
/// plans together, full size first, then by decreasing target area. A failed dry run is in
/// no group. With `plan_matters` false (not a JPEG) every planned variant is in one group.
fn group(plans: &[Option<(u32, u32)>], ok: &[bool], plan_matters: bool) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..plans.len()).filter(|&i| ok[i]).collect();
    if !plan_matters {
        return if order.is_empty() {
            vec![]
        } else {
            vec![order]
        };
    }
    order.sort_by_key(|&i| (plan_key(&plans[i]), i));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if plans[g[0]] == plans[i] => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
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
        match group(&targets, &ok, true).first() {
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
    let groups = group(&targets, &ok, plan_matters);
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
    fn variants_are_grouped_by_decode_plan_full_size_first_then_largest() {
        let plans = [
            Some((100, 50)),
            None,
            Some((400, 200)),
            Some((100, 50)),
            None,
        ];
        let ok = [true; 5];
        assert_eq!(
            group(&plans, &ok, true),
            vec![vec![1, 4], vec![2], vec![0, 3]]
        );
        // Not a JPEG: the plan does not change the decode, so one group.
        assert_eq!(group(&plans, &ok, false), vec![vec![0, 1, 2, 3, 4]]);
        // A variant whose dry run failed is in no group.
        let ok = [true, false, true, true, false];
        assert_eq!(group(&plans, &ok, true), vec![vec![2], vec![0, 3]]);
        assert!(group(&plans, &[false; 5], false).is_empty());
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
