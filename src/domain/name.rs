//! Person names and the initials the agent UI shows.

use unicode_segmentation::UnicodeSegmentation;

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Initials of a person's name: the first letter of the first and the last
/// word ("Ada Lovelace" → "AL"); "Last, First" is read as "First Last"; one
/// word gives one letter. Letters are whole graphemes, upper-cased where the
/// script has case, so non-Latin names keep their combining marks.
pub fn initials(name: &str) -> String {
    let reordered;
    let name = match name.split_once(',') {
        Some((last, first)) if !first.trim().is_empty() && !last.trim().is_empty() => {
            reordered = format!("{} {}", first.trim(), last.trim());
            reordered.as_str()
        }
        _ => name,
    };
    let words: Vec<&str> = name
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect();
    let first_letter =
        |word: &str| -> String { word.graphemes(true).next().map(str::to_uppercase).unwrap_or_default() };
    match words.as_slice() {
        [] => String::new(),
        [only] => first_letter(only),
        [first, .., last] => first_letter(first) + &first_letter(last),
    }
}

#[cfg(test)]
mod tests {
    use super::initials;

    #[test]
    fn western_names() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("Lovelace, Ada"), "AL");
        assert_eq!(initials("ada king lovelace"), "AL");
        assert_eq!(initials("Cher"), "C");
        assert_eq!(initials("  "), "");
        assert_eq!(initials("(Dr.) Jane O'Neil"), "DO");
    }

    #[test]
    fn non_latin_names() {
        assert_eq!(initials("Ёжик Туманов"), "ЁТ");
        assert_eq!(initials("山田 太郎"), "山太");
        assert_eq!(initials("देव नागरी"), "देना");
        assert_eq!(initials("émile zola"), "ÉZ");
    }
}
