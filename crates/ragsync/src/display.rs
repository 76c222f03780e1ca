//! Text from documents, file names and nodes made safe to print on a terminal.

/// `s` with every control character (C0, DEL, C1), every bidirectional formatting character
/// and the line and paragraph separators written as their escapes (`\u{1b}`), so that stored
/// text cannot move the cursor, recolour, retitle, break or reorder what a terminal shows
/// around it. Everything else is kept (zero-width joiners too: emoji are made of them).
pub fn terminal_safe(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_escaped_and_nothing_else() {
        assert_eq!(terminal_safe("plain café 数据"), "plain café 数据");
        assert_eq!(
            terminal_safe("red\x1b[31m!\x07\u{9b}\u{202e}txt\u{2066}"),
            "red\\u{1b}[31m!\\u{7}\\u{9b}\\u{202e}txt\\u{2066}"
        );
        assert_eq!(terminal_safe("tab\there"), "tab\\u{9}here");
        assert_eq!(terminal_safe("a\u{2028}b"), "a\\u{2028}b");
    }
}
