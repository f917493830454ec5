//! Plugin text on the terminal: everything a plugin wrote (messages,
//! events, errors, node and step names, its manifest's descriptions and
//! reasons) is escaped before it is printed for a human, so escape
//! sequences cannot move the cursor, retitle the window, clear the screen
//! or reorder text, and the operator reads what is really there. `--json`
//! output needs none of this: serde escapes control characters.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character except `\n` and `\t` shown as a
/// visible escape: C0 controls and DEL as `\x1b`, C1 controls and the
/// invisible bidirectional and line-breaking marks as `\u{202e}`.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Like [`escape_for_terminal`], for text that must stay on one line (a
/// name, a reason, a help text): `\n` is escaped too.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hidden = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// Characters a terminal acts on instead of showing, or that reorder or
/// break the text around them. Tab is shown as itself.
fn needs_escape(c: char) -> bool {
    match c {
        '\t' => false,
        // C0, DEL and C1 (U+0080–U+009F: 8-bit CSI, OSC, ...).
        c if c.is_control() => true,
        // Bidirectional marks, embeddings, overrides and isolates.
        '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => true,
        // Line and paragraph separators.
        '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_for_terminal("ok: written\n\tdone, ünïcode"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_become_visible() {
        assert_eq!(
            escape_for_terminal("\x1b]0;owned\x07\x1b[2Jline\r\nnext\x7f"),
            "\\x1b]0;owned\\x07\\x1b[2Jline\\x0d\nnext\\x7f"
        );
        assert_eq!(
            escape_for_terminal("a\u{9b}31mb\u{85}"),
            "a\\u{9b}31mb\\u{85}"
        );
        assert_eq!(
            escape_for_terminal("\u{202e}exec\u{202c} \u{2066}x\u{2069}\u{200f}"),
            "\\u{202e}exec\\u{202c} \\u{2066}x\\u{2069}\\u{200f}"
        );
        assert_eq!(escape_for_terminal("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(escape_line("one\ntwo\tthree"), "one\\x0atwo\tthree");
    }

    #[test]
    fn nothing_raw_survives() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = escape_for_terminal(&all);
        assert!(
            !out.chars()
                .any(|c| c != '\n' && c != '\t' && needs_escape(c)),
            "{out:?}"
        );
    }
}
