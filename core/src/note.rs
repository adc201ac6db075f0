//! Timeline notes: something that happened on a site on a day ("launched the new
//! pricing page"), with tags, shown beside the numbers of that day.

use crate::error::StoreError;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A note on a site's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id (a UUID, made when it is created).
    pub id: String,
    /// The site.
    pub site: String,
    /// The day it is about, in the site's time zone.
    pub date: NaiveDate,
    /// What happened: 1 to 1000 characters.
    pub text: String,
    /// At most 10 tags of 1 to 32 lower-case letters, digits, `-` or `_`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it was last changed.
    pub updated: DateTime<Utc>,
}

impl Note {
    /// Most tags on a note.
    pub const MAX_TAGS: usize = 10;
    /// Longest text, characters.
    pub const MAX_TEXT: usize = 1000;

    /// Checks the text and tags; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |field: &str, rule: String| {
            Err(StoreError::Invalid {
                field: field.into(),
                rule,
            })
        };
        let chars = self.text.trim().chars().count();
        if chars == 0 || self.text.chars().count() > Self::MAX_TEXT {
            return bad(
                "text",
                format!("must be 1 to {} characters", Self::MAX_TEXT),
            );
        }
        if self.tags.len() > Self::MAX_TAGS {
            return bad("tags", format!("at most {} tags", Self::MAX_TAGS));
        }
        for t in &self.tags {
            let ok = !t.is_empty()
                && t.len() <= 32
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
            if !ok {
                return bad(
                    "tags",
                    format!("{t:?} must be 1 to 32 lower-case letters, digits, '-' or '_'"),
                );
            }
        }
        Ok(())
    }
}
