//! Salesforce record ids.
//!
//! An id is 15 case-sensitive characters (3-character key prefix naming the object type,
//! then the record) or the same 15 plus a 3-character checksum that makes the id
//! case-insensitive. Two ids name the same record when their 15-character forms are equal.

use std::fmt;

/// Key prefixes of the objects Tripline deals with.
pub mod prefix {
    pub const USER: &str = "005";
    pub const GROUP: &str = "00G";
    pub const ORGANIZATION: &str = "00D";
    pub const PERMISSION_SET: &str = "0PS";
    pub const PERMISSION_SET_ASSIGNMENT: &str = "0Pa";
    pub const PERMISSION_SET_GROUP: &str = "0PG";
    pub const PROFILE: &str = "00e";
    pub const GROUP_MEMBER: &str = "011";
    pub const REPORT: &str = "00O";
    pub const DASHBOARD: &str = "01Z";
    pub const CONNECTED_APP: &str = "0H4";
    pub const REPORT_EVENT: &str = "0Yw";
    pub const TRANSACTION_SECURITY_POLICY: &str = "0NI";
    pub const LOGIN_EVENT: &str = "0Yq";
    pub const USER_LOGIN: &str = "060";
    pub const PERMISSION_SET_GROUP_COMPONENT: &str = "0PH";
}

/// The 15-character, case-sensitive key of an id-shaped text (the text itself when
/// shorter): two ids name the same record when their keys are equal. For ids held as
/// text (JSON values, SOQL results); an [`SfId`] has [`SfId::short`].
pub fn record_key(text: &str) -> &str {
    text.get(..15).unwrap_or(text)
}

/// A Salesforce record id, held in its 18-character form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SfId(String);

/// Why a text is not a Salesforce id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("a Salesforce id has 15 or 18 characters, not {0}")]
    Length(usize),
    #[error("a Salesforce id has only letters and digits")]
    Character,
    #[error("the last 3 characters of an 18-character id are its checksum, and they do not match")]
    Checksum,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (chunk, slot) in id15.chunks(5).zip(out.iter_mut()) {
        let bits =
            chunk.iter().enumerate().filter(|(_, c)| c.is_ascii_uppercase()).fold(0usize, |acc, (i, _)| acc | (1 << i));
        *slot = CHECKSUM_ALPHABET[bits];
    }
    out
}

impl SfId {
    /// Parses a 15- or 18-character id. An 18-character id's checksum is verified and its
    /// 15-character part (case-sensitive) is kept as written; case differences in the
    /// checksum are tolerated, as Salesforce does.
    pub fn parse(text: &str) -> Result<SfId, IdError> {
        let bytes = text.as_bytes();
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(IdError::Character);
        }
        match bytes.len() {
            15 => Ok(SfId::from_15(bytes)),
            18 => {
                let id = SfId::from_15(&bytes[..15]);
                if id.0[15..].eq_ignore_ascii_case(&text[15..]) { Ok(id) } else { Err(IdError::Checksum) }
            }
            n => Err(IdError::Length(n)),
        }
    }

    /// The id of record number `n` of an object with key `prefix`, on pod `pod`
    /// (2 characters). Deterministic: the same inputs give the same id.
    pub fn generate(prefix: &str, pod: &str, n: u64) -> SfId {
        let mut body = [b'0'; 10];
        let mut rest = n;
        for slot in body.iter_mut().rev() {
            *slot = BASE62[(rest % 62) as usize];
            rest /= 62;
        }
        let mut id15 = Vec::with_capacity(15);
        id15.extend_from_slice(prefix.as_bytes());
        id15.extend_from_slice(pod.as_bytes());
        id15.extend_from_slice(&body);
        assert_eq!(id15.len(), 15, "prefix is 3 characters and pod 2");
        SfId::from_15(&id15)
    }

    fn from_15(id15: &[u8]) -> SfId {
        let mut s = String::with_capacity(18);
        s.push_str(std::str::from_utf8(id15).unwrap_or_default());
        for c in checksum(id15) {
            s.push(c as char);
        }
        SfId(s)
    }

    /// The 18-character, case-insensitive form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 15-character, case-sensitive form.
    pub fn short(&self) -> &str {
        &self.0[..15]
    }

    /// The 3-character key prefix naming the object type.
    pub fn key_prefix(&self) -> &str {
        &self.0[..3]
    }
}

impl std::str::FromStr for SfId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<SfId, IdError> {
        SfId::parse(text)
    }
}

impl fmt::Display for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SfId({})", self.0)
    }
}

impl serde::Serialize for SfId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SfId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SfId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_checksums() {
        // Published examples of 15 → 18 conversion.
        assert_eq!(SfId::parse("001A0000006Vm9r").map(|i| i.0), Ok("001A0000006Vm9rIAC".into()));
        assert_eq!(SfId::parse("003A0000005QB3A").map(|i| i.0), Ok("003A0000005QB3AIAW".into()));
    }

    #[test]
    fn eighteen_is_case_insensitive_in_checksum_only() {
        let id = SfId::parse("001A0000006Vm9rIAC").expect("valid");
        assert_eq!(SfId::parse("001A0000006Vm9riac"), Ok(id.clone()));
        assert_eq!(SfId::parse("001A0000006Vm9rIAD"), Err(IdError::Checksum));
        assert_eq!(id.short(), "001A0000006Vm9r");
        assert_eq!(SfId::parse("001"), Err(IdError::Length(3)));
        assert_eq!(SfId::parse("001A0000006Vm9'"), Err(IdError::Character));
    }

    #[test]
    fn generated_ids_round_trip() {
        for n in [0, 1, 61, 62, 1_000_000, u32::MAX as u64] {
            let id = SfId::generate(prefix::USER, "5g", n);
            assert_eq!(id.as_str().len(), 18);
            assert_eq!(SfId::parse(id.short()), Ok(id.clone()));
            assert_eq!(id.key_prefix(), "005");
        }
    }
}
