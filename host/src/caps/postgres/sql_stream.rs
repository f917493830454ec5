//! Plain SQL (`.sql` items, as `pg_dump --format=plain` writes them) cut
//! into statements and `COPY ... FROM stdin` data, so a restore can send
//! them over the protocol without psql. There is no psql, so psql
//! meta-commands (`\!`, `\c`, `\o`, `\copy`, `\i`, ...) cannot run; one
//! found outside a string or comment is refused with its line, except
//! `\restrict` / `\unrestrict`, which pg_dump writes around its output and
//! which only forbid meta-commands, as here. The cutting follows psql's
//! own lexer (quotes, `E''` strings, dollar quotes, nested comments,
//! parentheses, `BEGIN ATOMIC` bodies); it decides only where statements
//! end, never what they may do: PostgreSQL checks every statement against
//! the role that runs it.

/// What the stream holds next.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// One statement, as text.
    Statement(String),
    /// A `COPY ... FROM stdin` statement: the data follows.
    Copy(String),
    /// Rows of `COPY` data (whole lines).
    CopyData(Vec<u8>),
    /// The end of a `COPY`'s data (`\.` or the end of the stream).
    CopyEnd,
}

/// Why the stream cannot be restored.
#[derive(Debug, PartialEq)]
pub enum SplitError {
    MetaCommand { line: u64, command: String },
    TooLong { line: u64 },
    NotUtf8 { line: u64 },
    TextAfterCopy { line: u64 },
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::MetaCommand { line, command } => write!(
                f,
                "line {line} holds the psql meta-command `{command}`; .sql items are restored \
                 through the PostgreSQL protocol, where meta-commands do not exist, so it is \
                 refused (a dump made by pg_dump has none but \\restrict)"
            ),
            SplitError::TooLong { line } => write!(
                f,
                "line {line}: a statement or line longer than {} MiB",
                MAX_PIECE >> 20
            ),
            SplitError::NotUtf8 { line } => write!(f, "line {line} is not UTF-8"),
            SplitError::TextAfterCopy { line } => write!(
                f,
                "line {line}: text after `COPY ... FROM stdin;` where its data should start"
            ),
        }
    }
}

/// Most bytes of one statement or one line.
const MAX_PIECE: usize = 64 << 20;
/// COPY data is handed on in pieces of about this size.
const COPY_FLUSH: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Normal,
    Quote,
    EQuote,
    Ident,
    /// In a dollar quote whose tag is `Splitter::tag`.
    Dollar,
    BlockComment(u32),
}

/// Cuts a byte stream into [`Piece`]s.
pub struct Splitter {
    partial: Vec<u8>,
    line: u64,
    state: State,
    statement: Vec<u8>,
    /// The statement holds more than whitespace and comments.
    code: bool,
    tag: Vec<u8>,
    copying: bool,
    copy_data: Vec<u8>,
    paren: i32,
    begin_depth: i32,
    /// First letters of the statement's first words that matter for
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (as psql tracks them).
    words: Vec<u8>,
    word_count: usize,
}

fn ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter::new()
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            partial: Vec::new(),
            line: 0,
            state: State::Normal,
            statement: Vec::new(),
            code: false,
            tag: Vec::new(),
            copying: false,
            copy_data: Vec::new(),
            paren: 0,
            begin_depth: 0,
            words: Vec::new(),
            word_count: 0,
        }
    }

    /// Take in `data`; complete pieces are appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Piece>) -> Result<(), SplitError> {
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(nl + 1);
            if self.partial.is_empty() {
                self.line(head, out)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(head);
                self.line(&whole, out)?;
            }
            rest = tail;
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PIECE {
            return Err(SplitError::TooLong {
                line: self.line + 1,
            });
        }
        if self.copying && self.copy_data.len() >= COPY_FLUSH {
            out.push(Piece::CopyData(std::mem::take(&mut self.copy_data)));
        }
        Ok(())
    }

    /// The end of the stream: what is left becomes the last pieces.
    pub fn finish(&mut self, out: &mut Vec<Piece>) -> Result<(), SplitError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last, out)?;
        }
        if self.copying {
            if !self.copy_data.is_empty() {
                out.push(Piece::CopyData(std::mem::take(&mut self.copy_data)));
            }
            out.push(Piece::CopyEnd);
            self.copying = false;
        }
        if self.code {
            let text = self.take_statement()?;
            out.push(Piece::Statement(text));
        }
        Ok(())
    }

    fn take_statement(&mut self) -> Result<String, SplitError> {
        let bytes = std::mem::take(&mut self.statement);
        self.code = false;
        self.paren = 0;
        self.begin_depth = 0;
        self.words.clear();
        self.word_count = 0;
        String::from_utf8(bytes).map_err(|_| SplitError::NotUtf8 { line: self.line })
    }

    /// One line (with its newline, unless the stream ended without one).
    // Long because it is a state machine over one line of SQL (quotes, dollar
    // quotes, comments, COPY data), its states clearest in one match.
    fn line(&mut self, line: &[u8], out: &mut Vec<Piece>) -> Result<(), SplitError> {
        self.line += 1;
        if self.copying {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content == b"\\." {
                if !self.copy_data.is_empty() {
                    out.push(Piece::CopyData(std::mem::take(&mut self.copy_data)));
                }
                out.push(Piece::CopyEnd);
                self.copying = false;
            } else {
                self.copy_data.extend_from_slice(line);
                if !line.ends_with(b"\n") {
                    self.copy_data.push(b'\n');
                }
            }
            return Ok(());
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            let next = line.get(i + 1).copied();
            let was_normal = self.state == State::Normal;
            match self.state {
                State::Normal => match b {
                    b'-' if next == Some(b'-') => {
                        // A comment to the end of the line.
                        self.statement.extend_from_slice(&line[i..]);
                        i = line.len();
                        continue;
                    }
                    b'/' if next == Some(b'*') => {
                        self.state = State::BlockComment(1);
                        self.statement.extend_from_slice(b"/*");
                        i += 2;
                        continue;
                    }
                    b'\'' => {
                        let n = self.statement.len();
                        let e_prefix = n >= 1
                            && matches!(self.statement[n - 1], b'E' | b'e')
                            && (n < 2 || !ident_char(self.statement[n - 2]));
                        self.state = if e_prefix {
                            State::EQuote
                        } else {
                            State::Quote
                        };
                    }
                    b'"' => self.state = State::Ident,
                    b'$' => {
                        let after_ident = self.statement.last().is_some_and(|p| ident_char(*p));
                        if !after_ident {
                            let tag_end = line[i + 1..]
                                .iter()
                                .position(|c| !ident_char(*c) || *c == b'$')
                                .map(|p| i + 1 + p);
                            if let Some(end) = tag_end
                                && line[end] == b'$'
                                && !line[i + 1..end].first().is_some_and(u8::is_ascii_digit)
                            {
                                self.tag = line[i + 1..end].to_vec();
                                self.statement.extend_from_slice(&line[i..=end]);
                                self.code = true;
                                self.state = State::Dollar;
                                i = end + 1;
                                continue;
                            }
                        }
                    }
                    b'(' => self.paren += 1,
                    b')' => self.paren = (self.paren - 1).max(0),
                    b'\\' => {
                        let word_end = line[i + 1..]
                            .iter()
                            .position(|c| c.is_ascii_whitespace())
                            .map_or(line.len(), |p| i + 1 + p);
                        let command = String::from_utf8_lossy(&line[i..word_end]).into_owned();
                        if !self.code && (command == "\\restrict" || command == "\\unrestrict") {
                            return Ok(());
                        }
                        return Err(SplitError::MetaCommand {
                            line: self.line,
                            command,
                        });
                    }
                    b';' if self.paren == 0 && self.begin_depth == 0 => {
                        self.statement.push(b';');
                        let code = self.code;
                        let text = self.take_statement()?;
                        let rest = &line[i + 1..];
                        if is_copy_from_stdin(&text) {
                            if !rest.iter().all(u8::is_ascii_whitespace) {
                                return Err(SplitError::TextAfterCopy { line: self.line });
                            }
                            out.push(Piece::Copy(text));
                            self.copying = true;
                            return Ok(());
                        }
                        if code {
                            out.push(Piece::Statement(text));
                        }
                        i += 1;
                        continue;
                    }
                    _ if ident_start(b)
                        && !self.statement.last().is_some_and(|p| ident_char(*p)) =>
                    {
                        let end = line[i..]
                            .iter()
                            .position(|c| !ident_char(*c))
                            .map_or(line.len(), |p| i + p);
                        self.word(&line[i..end]);
                        self.statement.extend_from_slice(&line[i..end]);
                        self.code = true;
                        i = end;
                        continue;
                    }
                    _ => {}
                },
                State::Quote | State::EQuote => {
                    if b == b'\\' && self.state == State::EQuote && next.is_some() {
                        self.statement.extend_from_slice(&line[i..i + 2]);
                        i += 2;
                        continue;
                    }
                    if b == b'\'' {
                        if next == Some(b'\'') {
                            self.statement.extend_from_slice(b"''");
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                }
                State::Ident => {
                    if b == b'"' {
                        if next == Some(b'"') {
                            self.statement.extend_from_slice(b"\"\"");
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                }
                State::Dollar => {
                    let tag = &self.tag;
                    if b == b'$'
                        && line[i + 1..].starts_with(tag)
                        && line.get(i + 1 + tag.len()) == Some(&b'$')
                    {
                        let end = i + 2 + tag.len();
                        self.statement.extend_from_slice(&line[i..end]);
                        self.state = State::Normal;
                        i = end;
                        continue;
                    }
                }
                State::BlockComment(depth) => {
                    if b == b'/' && next == Some(b'*') {
                        self.state = State::BlockComment(depth + 1);
                        self.statement.extend_from_slice(b"/*");
                        i += 2;
                        continue;
                    }
                    if b == b'*' && next == Some(b'/') {
                        self.state = if depth == 1 {
                            State::Normal
                        } else {
                            State::BlockComment(depth - 1)
                        };
                        self.statement.extend_from_slice(b"*/");
                        i += 2;
                        continue;
                    }
                }
            }
            self.statement.push(b);
            if was_normal && !b.is_ascii_whitespace() {
                self.code = true;
            }
            i += 1;
        }
        if self.statement.len() > MAX_PIECE {
            return Err(SplitError::TooLong { line: self.line });
        }
        Ok(())
    }

    /// psql's heuristic for `BEGIN ATOMIC ... END` bodies: inside
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, semicolons between BEGIN
    /// (and CASE within it) and END do not end the statement.
    fn word(&mut self, word: &[u8]) {
        let lower = word.to_ascii_lowercase();
        if self.word_count < 4 {
            let tracked = [&b"create"[..], b"function", b"procedure", b"or", b"replace"];
            self.words.push(if tracked.contains(&lower.as_slice()) {
                lower[0]
            } else {
                0
            });
        }
        self.word_count += 1;
        let w = |k: usize| self.words.get(k).copied().unwrap_or(0);
        let routine = w(0) == b'c'
            && (w(1) == b'f'
                || w(1) == b'p'
                || (w(1) == b'o' && w(2) == b'r' && (w(3) == b'f' || w(3) == b'p')));
        if routine && self.paren == 0 {
            match lower.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
    }
}

/// Whether `statement` is `COPY ... FROM STDIN` (its data follows in the
/// stream).
fn is_copy_from_stdin(statement: &str) -> bool {
    let mut body = statement.trim_start();
    loop {
        if let Some(rest) = body.strip_prefix("--") {
            body = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if body.starts_with("/*") {
            body = body.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let words: Vec<String> = body
        .trim_end_matches(';')
        .split_ascii_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    words.first().is_some_and(|w| w == "copy")
        && words
            .windows(2)
            .any(|p| p[0] == "from" && p[1].trim_end_matches(';') == "stdin")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, chunk: usize) -> Result<Vec<Piece>, SplitError> {
        let mut s = Splitter::new();
        let mut out = Vec::new();
        for c in text.as_bytes().chunks(chunk.max(1)) {
            s.feed(c, &mut out)?;
        }
        s.finish(&mut out)?;
        // Merge adjacent COPY data for comparison.
        let mut merged: Vec<Piece> = Vec::new();
        for p in out {
            match (merged.last_mut(), p) {
                (Some(Piece::CopyData(a)), Piece::CopyData(b)) => a.extend(b),
                (_, p) => merged.push(p),
            }
        }
        Ok(merged)
    }

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\
SET standard_conforming_strings = on;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\
CREATE FUNCTION public.f() RETURNS text\n    LANGUAGE sql\n    AS $_$select 'a;b' || $x$;$x$$_$;\n\
CREATE TABLE public.t (\n    i integer,\n    s text DEFAULT 'x;y'::text\n);\n\
COPY public.t (i, s) FROM stdin;\n1\ta;b\n2\t\\N\n\\.\n\
CREATE FUNCTION public.g() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\n SELECT CASE WHEN true THEN 2 ELSE 3 END;\nEND;\n\
\\unrestrict AbC123\n";

    #[test]
    fn a_plain_dump_splits_into_statements_and_copy_data() {
        for chunk in [1, 7, 4096] {
            let pieces = split(DUMP, chunk).unwrap();
            let kinds: Vec<String> = pieces
                .iter()
                .map(|p| match p {
                    Piece::Statement(s) => {
                        format!("S {}", s.trim().lines().last().unwrap_or("").trim())
                    }
                    Piece::Copy(s) => format!("C {}", s.trim()),
                    Piece::CopyData(d) => format!("D {}", String::from_utf8_lossy(d)),
                    Piece::CopyEnd => "E".into(),
                })
                .collect();
            assert_eq!(
                kinds,
                [
                    "S SET standard_conforming_strings = on;",
                    "S SELECT pg_catalog.set_config('search_path', '', false);",
                    "S AS $_$select 'a;b' || $x$;$x$$_$;",
                    "S );",
                    "C COPY public.t (i, s) FROM stdin;",
                    "D 1\ta;b\n2\t\\N\n",
                    "E",
                    "S END;",
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn meta_commands_are_refused_with_their_line() {
        let err = split("select 1;\n\\! touch /tmp/x\n", 3).unwrap_err();
        assert_eq!(
            err,
            SplitError::MetaCommand {
                line: 2,
                command: "\\!".into()
            }
        );
        assert!(matches!(
            split("select 1 \\g /tmp/out\n", 100),
            Err(SplitError::MetaCommand { line: 1, .. })
        ));
        // \restrict mid-statement is a meta-command like any other.
        assert!(split("select\n\\restrict x\n1;", 100).is_err());
        // A backslash in a string, an E'' string, a comment or a dollar
        // quote is text.
        let ok = split(
            "select '\\! no', E'\\' \\c no', $$ \\! no $$; -- \\! no\n/* \\c no */ select 1;",
            5,
        )
        .unwrap();
        assert_eq!(ok.len(), 2, "{ok:?}");
    }

    #[test]
    fn copy_detection_needs_from_stdin() {
        assert!(is_copy_from_stdin("COPY public.t (i) FROM stdin;"));
        assert!(is_copy_from_stdin(
            "-- c\ncopy t from STDIN with (format csv);"
        ));
        assert!(!is_copy_from_stdin("COPY t TO stdout;"));
        assert!(!is_copy_from_stdin("select 'copy from stdin';"));
    }
}
