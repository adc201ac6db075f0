//! Query results and the exact rounding rules of the contract.

use crate::money::Currency;
use crate::query::Metric;
use serde_json::{json, Value};

/// A metric value held exactly: `units / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricValue {
    /// The value in units of 10^-scale.
    pub units: i64,
    /// Decimal places.
    pub scale: u8,
}

impl MetricValue {
    /// An exact count.
    pub fn count(n: u64) -> Self {
        Self {
            units: i64::try_from(n).unwrap_or(i64::MAX),
            scale: 0,
        }
    }
    /// The value as a float (for display and JSON).
    pub fn as_f64(&self) -> f64 {
        self.units as f64 / 10f64.powi(i32::from(self.scale))
    }
    /// JSON: an integer for scale 0, else the shortest float that prints the exact decimal.
    pub fn to_json(&self) -> Value {
        if self.scale == 0 {
            json!(self.units)
        } else {
            json!(self.as_f64())
        }
    }
}

/// `num / den` rounded half away from zero to `scale` decimals, for non-negative
/// inputs; 0 when `den` is 0. All the contract's ratios go through here.
pub fn ratio(num: u128, den: u128, scale: u8) -> MetricValue {
    if den == 0 {
        return MetricValue { units: 0, scale };
    }
    let m = 10u128.pow(u32::from(scale));
    let units = (num * m * 2 + den) / (den * 2);
    MetricValue {
        units: i64::try_from(units).unwrap_or(i64::MAX),
        scale,
    }
}

/// A percentage `part / whole * 100` to one decimal.
pub fn percent(part: u64, whole: u64) -> MetricValue {
    ratio(u128::from(part) * 100, u128::from(whole), 1)
}

/// A mean of milliseconds in whole seconds.
pub fn mean_seconds(total_ms: u64, n: u64) -> MetricValue {
    ratio(u128::from(total_ms), u128::from(n) * 1000, 0)
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Dimension values in query order (`None` = missing).
    pub dimensions: Vec<Option<String>>,
    /// Metric values in query order.
    pub metrics: Vec<MetricValue>,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Rows after order, offset and limit.
    pub rows: Vec<ResultRow>,
    /// The metrics, in the order of each row's values.
    pub metrics: Vec<Metric>,
    /// Rows before offset and limit.
    pub total_rows: usize,
    /// Currency of `revenue`.
    pub currency: Currency,
    /// The query as understood, defaults and dates filled in.
    pub query: Value,
}

impl QueryResult {
    /// The contract's response JSON; `took_ms` is measured by the caller.
    pub fn to_json(&self, took_ms: u64) -> Value {
        json!({
            "results": self.rows.iter().map(|r| json!({
                "dimensions": r.dimensions,
                "metrics": r.metrics.iter().map(MetricValue::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "meta": {
                "metrics": self.metrics.iter().map(Metric::as_str).collect::<Vec<_>>(),
                "total_rows": self.total_rows,
                "took_ms": took_ms,
                "currency": self.currency.code(),
            },
            "query": self.query,
        })
    }

    /// The value of `metric` in the row whose dimensions are `dims`, if both exist.
    pub fn get(&self, dims: &[Option<&str>], metric: Metric) -> Option<MetricValue> {
        let m = self.metrics.iter().position(|x| *x == metric)?;
        self.rows
            .iter()
            .find(|r| {
                r.dimensions
                    .iter()
                    .map(Option::as_deref)
                    .eq(dims.iter().copied())
            })
            .map(|r| r.metrics[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_and_exact() {
        assert_eq!(percent(1, 3).units, 333);
        assert_eq!(percent(2, 3).units, 667);
        assert_eq!(percent(1, 8).units, 125); // 12.5 exactly
        assert_eq!(percent(1, 16).units, 63); // 6.25 -> 6.3
        assert_eq!(mean_seconds(1500, 1).units, 2);
        assert_eq!(mean_seconds(1499, 1).units, 1);
        assert_eq!(percent(5, 0).units, 0);
        assert_eq!(ratio(7, 3, 2).to_json(), json!(2.33));
        assert_eq!(MetricValue::count(4).to_json(), json!(4));
    }
}
