//! [`Text`]: an immutable, shared string for the values enrichment repeats on
//! millions of events (browser names, cities, channels).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string whose clones share one allocation.
///
/// Enrichment gives the same few thousand values (`"Chrome"`, `"Europe/Berlin"`,
/// `"Organic Search"`) to millions of events. A `String` per field per event costs
/// an allocation, a copy and a free each time; cloning a `Text` only counts a
/// reference. It reads like a `&str` (it dereferences to one) and is written to
/// JSON as a plain string.
///
/// ```
/// use beacon_core::Text;
/// let browser = Text::from("Firefox");
/// let again = browser.clone();
/// assert_eq!(again, "Firefox");
/// assert_eq!(again.len(), 7);
/// assert_eq!(serde_json::to_string(&again).unwrap(), r#""Firefox""#);
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text(Arc<str>);

impl Text {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Arc::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text(Arc::from(s.as_str()))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::from(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::from(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_allocation_and_compare_as_strings() {
        let a = Text::from("Organic Search".to_owned());
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, "Organic Search");
        assert_eq!("Organic Search", a);
        assert_eq!(a, "Organic Search".to_owned());
        assert_eq!(Some(a.clone()).as_deref(), Some("Organic Search"));
        assert_eq!(String::from(a), "Organic Search");
    }

    #[test]
    fn json_is_a_plain_string_and_escapes_survive() {
        let t = Text::from("say \"hi\"\n");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""say \"hi\"\n""#);
        assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Text>("7").is_err());
        assert_eq!(format!("{t:?}"), format!("{:?}", "say \"hi\"\n"));
    }
}
