//! User names: validated, kept in NFC for display, unique under a case-folded NFKC key.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::Invalid;
use crate::text;

/// A validated user name as typed, in NFC: 2–32 characters, each a Unicode letter or digit or
/// one of `_ - .`, at least one of them a visible letter or digit, none of them invisible.
/// It carries its [`key`](UserName::key), under which names are unique and looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName {
    display: String,
    key: String,
}

impl UserName {
    /// The name as the user typed it (NFC): what is stored and shown.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-folded NFKC key: `Alice`, `ALICE` and `ａｌｉｃｅ` all have the key `alice`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl FromStr for UserName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = text::nfc(s);
        let count = s.chars().count();
        if !(2..=32).contains(&count) {
            return Err(Invalid("user_name must be 2 to 32 characters".into()));
        }
        if !s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(Invalid("user_name may contain only letters, digits and _ - .".into()));
        }
        // Hangul fillers are letters (Lo) that draw nothing: `ㅤㅤ` would be a blank name and
        // `alice` + U+3164 a look-alike of `alice`.
        if s.chars().any(text::is_default_ignorable) {
            return Err(Invalid("user_name must not contain invisible characters".into()));
        }
        // `.`, `..` and `_-_` name nobody: they read as paths or punctuation.
        if !s.chars().any(|c| c.is_alphanumeric() && text::is_visible(c)) {
            return Err(Invalid("user_name must contain a letter or digit".into()));
        }
        let key = text::name_key(&s);
        Ok(Self { display: s, key })
    }
}

impl Serialize for UserName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.display)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A name for a new account: a [`UserName`] that does not mix scripts in a way that imitates
/// another name (`аlice` with a Cyrillic а). Existing accounts are looked up by any
/// [`UserName`], so an old account with such a name can still sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUserName(UserName);

impl NewUserName {
    pub fn as_name(&self) -> &UserName {
        &self.0
    }

    pub fn into_name(self) -> UserName {
        self.0
    }
}

impl FromStr for NewUserName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let name: UserName = s.parse()?;
        if text::is_confusable_mix(name.key()) {
            return Err(Invalid(
                "user_name mixes scripts that look alike (such as Latin and Cyrillic)".into(),
            ));
        }
        Ok(Self(name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_contract() {
        for ok in ["小明", "alice_01", "a.b-c", "ab", &"x".repeat(32)] {
            assert!(ok.parse::<UserName>().is_ok(), "{ok}");
        }
        for bad in ["a", "", "a b", "a/b", "<script>", &"x".repeat(33), "a\u{0}b"] {
            assert!(bad.parse::<UserName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_need_a_letter_or_digit_and_nothing_invisible() {
        for bad in ["..", "...", "__", "-.-", "_-_", "ㅤㅤ", "\u{115F}\u{1160}", "ab\u{3164}"] {
            let err = bad.parse::<UserName>().unwrap_err();
            let why = &err.0;
            assert!(why.contains("letter or digit") || why.contains("invisible"), "{bad}: {why}");
        }
        for bad in [".", "a\u{200B}b", "\u{FEFF}ab", "a\u{202E}b", "\u{2800}\u{2800}"] {
            assert!(bad.parse::<UserName>().is_err(), "{bad:?}");
        }
        for ok in ["a.", "_a", "1.2", "ab", "x_"] {
            assert!(ok.parse::<UserName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn user_names_are_kept_in_nfc_and_keyed_by_case_fold_and_nfkc() {
        let nfd: UserName = "cafe\u{301}".parse().unwrap();
        assert_eq!(nfd.as_str(), "café", "normalised, not refused");
        assert_eq!(nfd.key(), "café");
        let wide: UserName = "ａｌｉｃｅ".parse().unwrap();
        assert_eq!((wide.as_str(), wide.key()), ("ａｌｉｃｅ", "alice"));
        assert_eq!("ALICE".parse::<UserName>().unwrap().key(), "alice");
        assert_eq!(serde_json::to_value(&wide).unwrap(), "ａｌｉｃｅ");
    }

    #[test]
    fn new_names_may_not_mix_look_alike_scripts() {
        for ok in ["alice", "小明", "ひらがな漢字", "Ünïcödé", "alice小明", "ａｌｉｃｅ", "иван"]
        {
            assert!(ok.parse::<NewUserName>().is_ok(), "{ok}");
        }
        for bad in ["аlice", "pаypal", "αlice"] {
            assert!(bad.parse::<UserName>().is_ok(), "an old account keeps signing in: {bad}");
            assert!(bad.parse::<NewUserName>().is_err(), "{bad}");
        }
    }
}
