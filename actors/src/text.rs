//! Unicode rules for user-supplied text: which characters a reader can see, the key that makes
//! look-alike user names one name, and which mixtures of scripts are refused.
//!
//! Crates: `unicode-normalization` (NFC, NFD, NFKC) and `unicode-security` (UTS #39 mixed-script
//! detection with augmented script sets) from the unicode-rs project, and ICU4X's
//! `icu_casemap` (full case folding) and `icu_properties` (Default_Ignorable_Code_Point,
//! General_Category), maintained by the Unicode Consortium and already in the build through
//! `url`. Case folding and NFKC are stable for assigned characters (Unicode's stability
//! policies), so a stored key stays valid across upgrades of these tables.

use icu_casemap::CaseMapper;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization as _;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection as _};

/// The form a text is kept and shown in: NFC, so that a name typed decomposed (`cafe` + U+0301)
/// and precomposed (`café`) are the same string.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// The key a user name is unique under: its compatibility caseless form (Unicode §3.13, D146:
/// NFKD(casefold(NFKD(casefold(NFD(s))))), recomposed). `Alice`, `ALICE` and the full-width
/// `ａｌｉｃｅ` all have the key `alice`; `Straße` and `STRASSE` share `strasse`.
pub fn name_key(s: &str) -> String {
    let fold = CaseMapper::new();
    let once: String = fold.fold_string(&s.nfd().collect::<String>()).nfkd().collect();
    fold.fold_string(&once).nfkc().collect()
}

/// Whether a reader sees anything where `c` is: not white space, not a control or format
/// character, not Default_Ignorable (zero-width characters, BOM, bidi controls, variation
/// selectors, Hangul fillers), not a combining mark (it needs a base to show on), and not one
/// of the characters that are drawn blank (U+2800 braille pattern blank).
pub fn is_visible(c: char) -> bool {
    if c.is_whitespace() || c == '\u{2800}' {
        return false;
    }
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) {
        return false;
    }
    !matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::NonspacingMark
            | GeneralCategory::EnclosingMark
            | GeneralCategory::SpacingMark
    )
}

/// Whether `s` has at least one character a reader can see.
pub fn has_visible(s: &str) -> bool {
    s.chars().any(is_visible)
}

/// Whether `c` is Default_Ignorable: drawn as nothing, so never part of a user name.
pub fn is_default_ignorable(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// Whether a name key mixes scripts in a way UTS #39 flags as a spoofing risk. Accepted are the
/// "highly restrictive" names: one script (with Common characters such as digits, `_ - .`), or
/// Latin with Han and Japanese kana, with Han and Bopomofo, or with Han and Hangul — so `小明`,
/// `ひらがな漢字` and `alice小明` pass and `аlice` (Cyrillic а) does not. Characters outside
/// UTS #39's General Security Profile (obsolete or limited-use scripts) are refused too.
pub fn is_confusable_mix(key: &str) -> bool {
    key.detect_restriction_level() > RestrictionLevel::HighlyRestrictive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_names_share_one_key() {
        for n in ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
            assert_eq!(name_key(n), "alice", "{n}");
        }
        assert_eq!(name_key("cafe\u{301}"), name_key("café"));
        assert_eq!(name_key("CAFÉ"), "café");
        assert_eq!(name_key("Straße"), name_key("STRASSE"));
        assert_eq!(name_key("小明"), "小明");
        assert_ne!(name_key("аlice"), name_key("alice"), "a Cyrillic а is another letter");
        assert_eq!(nfc("cafe\u{301}"), "café");
    }

    #[test]
    fn invisible_characters_are_recognised() {
        let invisible = [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{2800}',
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{202E}',
            '\u{2066}',
            '\u{200E}',
            '\u{061C}',
            '\u{180E}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{00AD}',
            '\u{034F}',
            '\u{0301}',
            ' ',
            '\t',
            '\u{3000}',
            '\u{00A0}',
            '\u{2028}',
            '\u{0}',
        ];
        for c in invisible {
            assert!(!is_visible(c), "U+{:04X} is not visible", c as u32);
        }
        for c in ['a', '小', '1', '.', '😀', 'é', 'ㄱ', '한'] {
            assert!(is_visible(c), "{c} is visible");
        }
        assert!(is_default_ignorable('\u{3164}') && is_default_ignorable('\u{200B}'));
        assert!(!is_default_ignorable('a'));
    }

    #[test]
    fn only_confusable_script_mixtures_are_refused() {
        for ok in ["alice_01", "a.b-c", "小明", "ひらがな漢字", "カタカナ", "alice小明", "ünïcödé"]
        {
            assert!(!is_confusable_mix(&name_key(ok)), "{ok}");
        }
        for bad in ["аlice", "pаypal", "αlice", "alice\u{3164}"] {
            assert!(is_confusable_mix(&name_key(bad)), "{bad}");
        }
    }
}
