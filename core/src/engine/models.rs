//! Multi-touch attribution models (contract section 4): how one conversion's credit
//! is shared among the sessions (touches) that led to it.

use crate::query::AttributionModel;

/// One touch: a session of the converting visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// When the session started, ms since the epoch.
    pub start_ms: i64,
    /// The session's value of the dimension credited (`None` = empty, e.g. direct).
    pub value: Option<String>,
}

/// The share of the credit each touch gets, in the order of `touches` (which must be
/// sorted by start). Shares are non-negative and sum to 1 (empty input: no shares).
pub fn shares(
    model: AttributionModel,
    touches: &[Touch],
    conversion_ms: i64,
    half_life_days: f64,
) -> Vec<f64> {
    let compact: Vec<(i64, bool)> = touches
        .iter()
        .map(|t| {
            (
                t.start_ms,
                t.value.as_deref().is_some_and(|v| !v.is_empty()),
            )
        })
        .collect();
    let mut s = Vec::new();
    shares_into(model, &compact, conversion_ms, half_life_days, &mut s);
    s
}

/// [`shares`] over compact touches `(start_ms, has a value)`, written into `s` (no
/// allocation once `s` has grown): the attribution engine's inner loop.
pub(crate) fn shares_into(
    model: AttributionModel,
    touches: &[(i64, bool)],
    conversion_ms: i64,
    half_life_days: f64,
    s: &mut Vec<f64>,
) {
    let n = touches.len();
    s.clear();
    s.resize(n, 0.0);
    if n == 0 {
        return;
    }
    match model {
        AttributionModel::FirstTouch => s[0] = 1.0,
        AttributionModel::LastTouch => s[n - 1] = 1.0,
        AttributionModel::LastNonDirect => {
            let i = touches.iter().rposition(|t| t.1).unwrap_or(n - 1);
            s[i] = 1.0;
        }
        AttributionModel::Linear => s.iter_mut().for_each(|x| *x = 1.0 / n as f64),
        AttributionModel::TimeDecay => {
            let half_life_ms = half_life_days * 86_400_000.0;
            for (x, t) in s.iter_mut().zip(touches) {
                let age = (conversion_ms - t.0).max(0) as f64;
                *x = (-age / half_life_ms).exp2();
            }
            let total: f64 = s.iter().sum();
            s.iter_mut().for_each(|x| *x /= total);
        }
        AttributionModel::PositionBased => match n {
            1 => s[0] = 1.0,
            2 => {
                s[0] = 0.5;
                s[1] = 0.5;
            }
            _ => {
                s[0] = 0.4;
                s[n - 1] = 0.4;
                let middle = 0.2 / (n - 2) as f64;
                s[1..n - 1].iter_mut().for_each(|x| *x = middle);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    const DAY: i64 = 86_400_000;

    fn touches(values: &[Option<&str>]) -> Vec<Touch> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Touch {
                start_ms: i as i64 * DAY,
                value: v.map(str::to_owned),
            })
            .collect()
    }

    #[test]
    fn each_model_by_hand() {
        use AttributionModel::*;
        let t = touches(&[Some("Google"), None, Some("Newsletter"), None]);
        let conv = 3 * DAY;
        assert_eq!(shares(FirstTouch, &t, conv, 7.0), vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(shares(LastTouch, &t, conv, 7.0), vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            shares(LastNonDirect, &t, conv, 7.0),
            vec![0.0, 0.0, 1.0, 0.0],
            "latest non-empty: Newsletter"
        );
        assert_eq!(
            shares(LastNonDirect, &touches(&[None, None]), conv, 7.0),
            vec![0.0, 1.0],
            "direct only: the latest"
        );
        assert_eq!(shares(Linear, &t, conv, 7.0), vec![0.25; 4]);
        assert_eq!(
            shares(PositionBased, &t, conv, 7.0),
            vec![0.4, 0.1, 0.1, 0.4]
        );
        assert_eq!(
            shares(PositionBased, &touches(&[None, None]), conv, 7.0),
            vec![0.5, 0.5]
        );
        assert_eq!(
            shares(PositionBased, &touches(&[None]), conv, 7.0),
            vec![1.0]
        );
        // Time decay, half-life 1 day: ages 3, 2, 1, 0 days -> weights 1/8, 1/4, 1/2, 1 -> / 15/8.
        let td = shares(TimeDecay, &t, conv, 1.0);
        let want = [1.0 / 15.0, 2.0 / 15.0, 4.0 / 15.0, 8.0 / 15.0];
        assert!(
            td.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{td:?}"
        );
        assert!(shares(Linear, &[], conv, 7.0).is_empty());
    }

    proptest! {
        #[test]
        fn shares_sum_to_one(n in 1usize..12, gaps in prop::collection::vec(0i64..(30 * DAY), 12), direct in prop::collection::vec(any::<bool>(), 12), half_life in 0.5f64..30.0) {
            let mut start = 0;
            let t: Vec<Touch> = (0..n).map(|i| { start += gaps[i]; Touch { start_ms: start, value: (!direct[i]).then(|| "x".to_owned()) } }).collect();
            for m in [AttributionModel::FirstTouch, AttributionModel::LastTouch, AttributionModel::LastNonDirect, AttributionModel::Linear, AttributionModel::TimeDecay, AttributionModel::PositionBased] {
                let s = shares(m, &t, start, half_life);
                prop_assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{m:?} {s:?}");
                prop_assert!(s.iter().all(|x| *x >= 0.0));
            }
        }
    }
}
