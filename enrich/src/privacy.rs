//! Privacy helpers: SHA-256 of normalised e-mail addresses and phone numbers, for
//! matching customers without storing them.

use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of an e-mail address trimmed and lower-cased; `None` when it has no `@`.
pub fn hash_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    (!local.is_empty() && domain.contains('.')).then(|| hex(&Sha256::digest(e.as_bytes())))
}

/// SHA-256 (hex) of a phone number reduced to `+` and digits (E.164 style);
/// `None` with fewer than 7 digits.
pub fn hash_phone(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return None;
    }
    let normalised = if phone.trim_start().starts_with("00") {
        format!("+{}", digits.trim_start_matches("00"))
    } else {
        format!("+{digits}")
    };
    Some(hex(&Sha256::digest(normalised.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_before_hashing() {
        assert_eq!(
            hash_email(" Jane.Doe@Example.COM "),
            hash_email("jane.doe@example.com")
        );
        assert_eq!(
            hash_email("test@example.com").as_deref(),
            Some("973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b")
        );
        assert_eq!(hash_email("nope"), None);
        assert_eq!(
            hash_phone("+49 (30) 123-4567"),
            hash_phone("0049 30 1234567")
        );
        assert_eq!(hash_phone("12"), None);
    }
}
