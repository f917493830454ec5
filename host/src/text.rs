//! Text every layer shows or passes on: plugin text escaped for the
//! terminal, words quoted for a shell, text cut to a byte cap on a
//! character boundary, and byte streams split into lines.
//!
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

/// Quote one word for a POSIX shell: plain words stay as they are.
pub fn shell_quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if !word.is_empty() && plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), saying
/// how much was cut.
pub fn cap_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let cut = floor_char_boundary(&text, max);
    // A new string: truncating would keep the whole allocation alive.
    format!(
        "{}… ({} more bytes not kept)",
        &text[..cut],
        text.len() - cut
    )
}

/// The largest index `<= at` on a character boundary of `text`.
pub fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut cut = at.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Splits a byte stream into lines (for a step's live output), keeping at
/// most one partial line (capped) between chunks.
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest partial line a [`LineSplitter`] keeps between chunks.
const MAX_PARTIAL: usize = 4096;

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
        }
    }

    /// Feed bytes; calls `each` with every complete line.
    pub fn feed(&mut self, data: &[u8], mut each: impl FnMut(&str)) {
        for piece in data.split_inclusive(|b| *b == b'\n') {
            if piece.ends_with(b"\n") {
                self.partial.extend_from_slice(piece);
                each(&String::from_utf8_lossy(&self.partial));
                self.partial.clear();
            } else if self.partial.len() < MAX_PARTIAL {
                let room = MAX_PARTIAL - self.partial.len();
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
            }
        }
        // A progress redraw (`\r`) without a newline is worth showing too.
        if self.partial.contains(&b'\r') {
            each(&String::from_utf8_lossy(&self.partial));
            let keep = self
                .partial
                .iter()
                .rposition(|b| *b == b'\r')
                .map_or(0, |i| i + 1);
            self.partial.drain(..keep);
        }
    }

    /// The last line, if it had no newline.
    pub fn finish(&mut self, mut each: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            each(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
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

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("plain-word_1.txt"), "plain-word_1.txt");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn caps_cut_on_a_character_boundary() {
        assert_eq!(cap_text("short".into(), 10), "short");
        assert_eq!(cap_text("ééé".into(), 3), "é… (4 more bytes not kept)");
        assert_eq!(floor_char_boundary("é", 1), 0);
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let mut s = LineSplitter::new();
        let mut got = Vec::new();
        s.feed(b"one\ntw", |l| got.push(l.to_string()));
        s.feed(b"o\nthree", |l| got.push(l.to_string()));
        s.finish(|l| got.push(l.to_string()));
        assert_eq!(got, ["one\n", "two\n", "three"]);
    }

    #[test]
    fn a_carriage_return_redraw_is_shown_and_a_huge_line_is_capped() {
        let mut s = LineSplitter::new();
        let mut got = Vec::new();
        s.feed(b" 10%\r 20%\r", |l| got.push(l.to_string()));
        assert_eq!(got, [" 10%\r 20%\r"]);
        s.feed(&vec![b'x'; 100_000], |_| {});
        assert!(s.partial.len() <= MAX_PARTIAL);
    }
}
