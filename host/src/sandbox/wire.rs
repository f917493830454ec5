//! One sandboxed file operation as a request and its reply, served the
//! same way in the host (local node) and in `stackhost-agent` (remote
//! nodes). Over SSH the agent reads one JSON request line, then the
//! operation's input (a file's bytes, a tar stream) on stdin, and answers
//! with frames on stdout: `D` frames of output data, then one `R` frame
//! holding the JSON result. Paths travel as raw bytes (base64), never
//! through a text conversion, so the path checked is the path used.

use super::path::{LinkPolicy, bytes};
use super::root::RootRef;
use super::{FileKind, FsError, Root, Stat, ops, tree};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Longest request line an agent accepts.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest data frame.
pub const FRAME: usize = 64 << 10;

/// A path below a pinned root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loc {
    pub root: RootRef,
    #[serde(with = "bytes")]
    pub rel: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Resolve and vet a grant root (see [`Root::pin`]).
    Pin {
        #[serde(with = "bytes")]
        path: PathBuf,
    },
    /// With `follow`, a final symlink (staying beneath) is followed.
    Stat {
        at: Loc,
        #[serde(default)]
        follow: bool,
    },
    /// The file's bytes follow as output.
    Read {
        at: Loc,
        max: u64,
    },
    /// The file's `len` bytes are the input.
    Write {
        at: Loc,
        mode: Option<u32>,
        len: u64,
    },
    List {
        at: Loc,
    },
    Mkdir {
        at: Loc,
        recursive: bool,
    },
    Rename {
        from: Loc,
        to: Loc,
    },
    Remove {
        at: Loc,
        recursive: bool,
    },
    Symlink {
        at: Loc,
        #[serde(with = "bytes")]
        target: PathBuf,
    },
    Copy {
        from: Loc,
        to: Loc,
        links: LinkPolicy,
    },
    /// A file's bytes or a directory's tar stream follow as output.
    Pack {
        at: Loc,
    },
    /// A tar stream is the input.
    Unpack {
        at: Loc,
        links: LinkPolicy,
    },
    /// Where the path really is (see [`ops::resolve`]).
    Resolve {
        at: Loc,
        #[serde(default)]
        may_be_missing: bool,
    },
}

/// One directory entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "bytes")]
    pub name: PathBuf,
    pub kind: FileKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Pinned(RootRef),
    Stat(Option<Stat>),
    List(Vec<Entry>),
    /// Bytes read, written or copied.
    Bytes(u64),
    Packed(FileKind),
    Path(#[serde(with = "bytes")] PathBuf),
    Done,
}

/// Carry out `req`, taking roots through `open` (the host's pinned
/// handles, or [`Root::reopen`] in an agent).
pub fn serve(
    req: Request,
    input: &mut dyn Read,
    output: &mut dyn Write,
    open: &mut dyn FnMut(&RootRef) -> Result<Arc<Root>, FsError>,
) -> Result<Reply, FsError> {
    let mut at = |loc: &Loc| -> Result<(Arc<Root>, PathBuf), FsError> {
        Ok((open(&loc.root)?, loc.rel.clone()))
    };
    macro_rules! with_at {
        ($loc:expr, |$a:ident| $body:expr) => {{
            let (root, rel) = at(&$loc)?;
            let $a = ops::At { root: &root, rel };
            $body
        }};
    }
    Ok(match req {
        Request::Pin { path } => Reply::Pinned(Root::pin(&path)?.id),
        Request::Stat { at, follow } => with_at!(at, |a| Reply::Stat(ops::stat(&a, follow)?)),
        Request::Read { at, max } => with_at!(at, |a| {
            let data = ops::read(&a, max)?;
            output
                .write_all(&data)
                .map_err(|e| FsError::Io(format!("sending the file: {e}")))?;
            Reply::Bytes(data.len() as u64)
        }),
        Request::Write { at, mode, len } => {
            with_at!(at, |a| Reply::Bytes(ops::write(&a, input, mode, len)?))
        }
        Request::List { at } => with_at!(at, |a| Reply::List(
            ops::list(&a)?
                .into_iter()
                .map(|(name, kind)| Entry {
                    name: name.into(),
                    kind
                })
                .collect()
        )),
        Request::Mkdir { at, recursive } => with_at!(at, |a| {
            ops::mkdir(&a, recursive)?;
            Reply::Done
        }),
        Request::Rename { from, to } => {
            let ((r1, rel1), (r2, rel2)) = (at(&from)?, at(&to)?);
            ops::rename(&ops::At::new(&r1, rel1), &ops::At::new(&r2, rel2))?;
            Reply::Done
        }
        Request::Remove { at, recursive } => with_at!(at, |a| {
            ops::remove(&a, recursive)?;
            Reply::Done
        }),
        Request::Symlink { at, target } => with_at!(at, |a| {
            ops::symlink(&a, &target)?;
            Reply::Done
        }),
        Request::Copy { from, to, links } => {
            let ((r1, rel1), (r2, rel2)) = (at(&from)?, at(&to)?);
            Reply::Bytes(tree::copy(
                &ops::At::new(&r1, rel1),
                &ops::At::new(&r2, rel2),
                &links,
            )?)
        }
        Request::Pack { at } => with_at!(at, |a| Reply::Packed(tree::pack(&a, output)?)),
        Request::Unpack { at, links } => {
            with_at!(at, |a| Reply::Bytes(tree::unpack(&a, input, &links)?))
        }
        Request::Resolve { at, may_be_missing } => {
            with_at!(at, |a| Reply::Path(ops::resolve(&a, may_be_missing)?))
        }
    })
}

/// Writes output as `D` frames.
pub struct FrameWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W) -> Self {
        FrameWriter {
            out,
            buf: Vec::with_capacity(FRAME),
        }
    }

    fn frame(&mut self, tag: u8, data: &[u8]) -> std::io::Result<()> {
        self.out.write_all(&[tag])?;
        self.out.write_all(&(data.len() as u32).to_be_bytes())?;
        self.out.write_all(data)
    }

    fn flush_data(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.frame(b'D', &buf)?;
            self.buf = buf;
            self.buf.clear();
        }
        Ok(())
    }

    /// Send the result frame and flush.
    pub fn finish(mut self, result: &Result<Reply, FsError>) -> std::io::Result<()> {
        self.flush_data()?;
        let json = serde_json::to_vec(result).map_err(std::io::Error::other)?;
        self.frame(b'R', &json)?;
        self.out.flush()
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(FRAME - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME {
            self.flush_data()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_data()?;
        self.out.flush()
    }
}

/// Reads frames back (on the host), passing data on and keeping the
/// result.
#[derive(Default)]
pub struct FrameReader {
    pending: Vec<u8>,
    result: Option<Result<Reply, FsError>>,
}

impl FrameReader {
    /// Take in `chunk`; data frames go to `data`. An error means the
    /// stream is not a well-formed frame stream.
    pub fn feed(&mut self, chunk: &[u8], data: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        let mut at = 0;
        while self.pending.len() - at >= 5 {
            let tag = self.pending[at];
            let len = u32::from_be_bytes(self.pending[at + 1..at + 5].try_into().unwrap_or([0; 4]))
                as usize;
            let limit = if tag == b'R' { MAX_REQUEST * 64 } else { FRAME };
            if len > limit || !matches!(tag, b'D' | b'R') || self.result.is_some() {
                return Err(format!("unexpected frame (tag {tag:#x}, {len} bytes)"));
            }
            if self.pending.len() - at - 5 < len {
                break;
            }
            let body = &self.pending[at + 5..at + 5 + len];
            if tag == b'D' {
                data(body);
            } else {
                self.result = Some(
                    serde_json::from_slice(body).map_err(|e| format!("unreadable result: {e}"))?,
                );
            }
            at += 5 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// The result, once the stream has ended.
    pub fn result(self) -> Option<Result<Reply, FsError>> {
        if self.pending.is_empty() {
            self.result
        } else {
            None
        }
    }
}

/// Read the request line an agent starts with.
pub fn read_request(input: &mut dyn Read) -> Result<Request, FsError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => return Err(FsError::Invalid("the request ended early".into())),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(FsError::Io(format!("reading the request: {e}"))),
        }
        if line.len() > MAX_REQUEST {
            return Err(FsError::Invalid("the request is too long".into()));
        }
    }
    serde_json::from_slice(&line).map_err(|e| FsError::Invalid(format!("unreadable request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out);
        w.write_all(&vec![7u8; FRAME + 10]).unwrap();
        w.finish(&Ok(Reply::Bytes(3))).unwrap();
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        // Fed in awkward pieces.
        for piece in out.chunks(1000) {
            r.feed(piece, &mut |d| got.extend_from_slice(d)).unwrap();
        }
        assert_eq!(got.len(), FRAME + 10);
        assert!(matches!(r.result(), Some(Ok(Reply::Bytes(3)))));
    }

    #[test]
    fn a_newline_in_a_path_survives_the_wire() {
        let req = Request::Pin {
            path: PathBuf::from("/srv/link\n"),
        };
        let line = serde_json::to_vec(&req).unwrap();
        assert!(!line.contains(&b'\n'));
        let back: Request = serde_json::from_slice(&line).unwrap();
        let Request::Pin { path } = back else {
            panic!()
        };
        assert_eq!(path, PathBuf::from("/srv/link\n"));
    }
}
