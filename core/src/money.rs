//! Exact money: minor units with an ISO 4217 currency. Never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Active ISO 4217 codes with their number of minor-unit digits.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// An ISO 4217 currency code known to Beacon.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollar, the default site currency.
    pub const USD: Currency = Currency(*b"USD");
    /// Euro.
    pub const EUR: Currency = Currency(*b"EUR");

    /// Parses a three-letter code (case-insensitive); `None` when it is not an active ISO 4217 code.
    pub fn parse(code: &str) -> Option<Self> {
        let upper = code.to_ascii_uppercase();
        CURRENCIES
            .binary_search_by(|(c, _)| c.cmp(&upper.as_str()))
            .ok()
            .map(|i| {
                let b = CURRENCIES[i].0.as_bytes();
                Currency([b[0], b[1], b[2]])
            })
    }
    /// The code, such as `"EUR"`.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
    /// Digits of the minor unit (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u8 {
        CURRENCIES
            .binary_search_by(|(c, _)| c.cmp(&self.code()))
            .map(|i| CURRENCIES[i].1)
            .unwrap_or(2)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Currency::parse(&s).ok_or_else(|| format!("unknown ISO 4217 currency {s:?}"))
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// Why an amount string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not of the form `123`, `123.4` or `123.45`.
    #[error("must be a decimal string such as \"49.00\"")]
    NotDecimal,
    /// More fraction digits than the currency has.
    #[error("has more than {0} decimal places for its currency")]
    TooPrecise(u8),
    /// Too large to hold exactly.
    #[error("is too large")]
    TooLarge,
    /// Negative where only non-negative amounts are allowed.
    #[error("must not be negative")]
    Negative,
}

/// An exact amount: integer minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units (cents for USD).
    pub minor: i64,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// Parses a decimal string such as `"49.00"` or `"-3.5"` in `currency`.
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        let exp = currency.exponent();
        let s = amount.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !all_digits(int)
            || !all_digits(frac)
            || (digits.contains('.') && frac.is_empty())
        {
            return Err(MoneyError::NotDecimal);
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > usize::from(exp) {
            return Err(MoneyError::TooPrecise(exp));
        }
        let mut minor: i64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(MoneyError::TooLarge)?;
        }
        for _ in frac.len()..usize::from(exp) {
            minor = minor.checked_mul(10).ok_or(MoneyError::TooLarge)?;
        }
        Ok(Money {
            minor: if neg { -minor } else { minor },
            currency,
        })
    }

    /// The amount as a decimal string with exactly the currency's digits (`"49.00"`).
    pub fn to_decimal_string(&self) -> String {
        format_minor(self.minor, self.currency.exponent())
    }
}

/// Formats minor units as a decimal string with `exp` fraction digits.
pub fn format_minor(minor: i64, exp: u8) -> String {
    let neg = minor < 0;
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(u32::from(exp));
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(&(abs / scale).to_string());
    if exp > 0 {
        s.push('.');
        s.push_str(&format!(
            "{:0width$}",
            abs % scale,
            width = usize::from(exp)
        ));
    }
    s
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn parses_exact_minor_units() {
        let usd = Currency::USD;
        assert_eq!(Money::parse("49.00", usd).unwrap().minor, 4900);
        assert_eq!(Money::parse("49.5", usd).unwrap().minor, 4950);
        assert_eq!(Money::parse("49", usd).unwrap().minor, 4900);
        assert_eq!(Money::parse("0.10", usd).unwrap().minor, 10);
        assert_eq!(Money::parse("-3.5", usd).unwrap().minor, -350);
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(Money::parse("1200", jpy).unwrap().minor, 1200);
        assert_eq!(Money::parse("1200.0", jpy).unwrap().minor, 1200);
        assert_eq!(Money::parse("1200.5", jpy), Err(MoneyError::TooPrecise(0)));
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money::parse("1.234", kwd).unwrap().to_decimal_string(),
            "1.234"
        );
    }

    #[test]
    fn rejects_what_is_not_a_decimal() {
        for bad in [
            "", ".", "1.", ".5", "1e3", "abc", "1,00", "--1", "1.2.3", " ",
        ] {
            assert_eq!(
                Money::parse(bad, Currency::USD),
                Err(MoneyError::NotDecimal),
                "{bad:?}"
            );
        }
        assert_eq!(
            Money::parse("1.001", Currency::USD),
            Err(MoneyError::TooPrecise(2))
        );
        assert_eq!(
            Money::parse("99999999999999999999", Currency::USD),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn formats_minor_units() {
        assert_eq!(format_minor(4900, 2), "49.00");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(7, 0), "7");
        assert!(Currency::parse("XYZ").is_none());
    }
}
