//! Unicode rules for user-supplied text: which characters a reader can see.
//!
//! `icu_properties` (ICU4X, maintained by the Unicode Consortium and already in the build
//! through `url`) gives Default_Ignorable_Code_Point and General_Category.

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
