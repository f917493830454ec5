//! The SDK's error type: every capability error the host can return, plus
//! the plugin's own failures, and the conversions to and from the WIT
//! `error` variant.

use crate::bindings::stackhost::host::types::Error as WitError;
use std::fmt;

/// Why something failed.
///
/// The first eight variants mirror the WIT `error` variant one to one, so a
/// capability error passed on with `?` reaches the operator unchanged (for
/// example `permission denied: fs write of ...`). [`Error::Plugin`] is for
/// the plugin's own failures; it reaches the host as `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The call lies outside the plugin's grant; the message names the grant
    /// that would have allowed it.
    PermissionDenied(String),
    /// The node, path, database, image or item does not exist.
    NotFound(String),
    /// The node could not be reached.
    Unreachable(String),
    /// The call ran past its time limit.
    Timeout(String),
    /// An argument was malformed (relative path, empty program, ...).
    InvalidArgument(String),
    /// The host knows the call but has not implemented it yet.
    Unsupported(String),
    /// An I/O error on the node.
    Io(String),
    /// Anything else the host reported, with the node's own message.
    Failed(String),
    /// The plugin itself gave up (see [`bail!`](crate::bail)); reported to
    /// the host as `failed`.
    Plugin(String),
    /// The operator's arguments are wrong (from `plan`): printed as a plain
    /// `error:` line, exit status 2. Made by [`usage!`](crate::usage).
    Usage(String),
}

/// `Result` with the SDK's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A plugin failure with `message`, the same as [`Error::Plugin`].
    pub fn plugin(message: impl Into<String>) -> Error {
        Error::Plugin(message.into())
    }

    /// The human-readable message, without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::PermissionDenied(m)
            | Error::NotFound(m)
            | Error::Unreachable(m)
            | Error::Timeout(m)
            | Error::InvalidArgument(m)
            | Error::Unsupported(m)
            | Error::Io(m)
            | Error::Failed(m)
            | Error::Plugin(m)
            | Error::Usage(m) => m,
        }
    }

    /// True for [`Error::NotFound`], the one error plugins commonly treat as
    /// an answer ("nothing there yet") rather than a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same wording the host uses, so a message reads alike whether
        // the plugin or the host prints it.
        let kind = match self {
            Error::PermissionDenied(_) => "permission denied",
            Error::NotFound(_) => "not found",
            Error::Unreachable(_) => "unreachable",
            Error::Timeout(_) => "timeout",
            Error::InvalidArgument(_) => "invalid argument",
            Error::Unsupported(_) => "unsupported",
            Error::Io(_) => "I/O error",
            Error::Failed(_) => "failed",
            Error::Plugin(m) | Error::Usage(m) => return f.write_str(m),
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(e: WitError) -> Error {
        match e {
            WitError::PermissionDenied(m) => Error::PermissionDenied(m),
            WitError::NotFound(m) => Error::NotFound(m),
            WitError::Unreachable(m) => Error::Unreachable(m),
            WitError::Timeout(m) => Error::Timeout(m),
            WitError::InvalidArgument(m) => Error::InvalidArgument(m),
            WitError::Unsupported(m) => Error::Unsupported(m),
            WitError::Io(m) => Error::Io(m),
            WitError::Failed(m) => Error::Failed(m),
        }
    }
}

impl From<Error> for WitError {
    fn from(e: Error) -> WitError {
        match e {
            Error::PermissionDenied(m) => WitError::PermissionDenied(m),
            Error::NotFound(m) => WitError::NotFound(m),
            Error::Unreachable(m) => WitError::Unreachable(m),
            Error::Timeout(m) => WitError::Timeout(m),
            Error::InvalidArgument(m) => WitError::InvalidArgument(m),
            Error::Unsupported(m) => WitError::Unsupported(m),
            Error::Io(m) => WitError::Io(m),
            Error::Failed(m) | Error::Plugin(m) | Error::Usage(m) => WitError::Failed(m),
        }
    }
}

/// Return early with an [`Error::Plugin`] built like `format!`.
///
/// ```
/// # use stackhost_sdk::{bail, Result};
/// fn check(free: u64) -> Result<()> {
///     if free < 1024 {
///         bail!("only {free} bytes free");
///     }
///     Ok(())
/// }
/// assert_eq!(check(10).unwrap_err().to_string(), "only 10 bytes free");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::Plugin(::std::format!($($arg)+)))
    };
}

/// Return early with an [`Error::Plugin`] unless `cond` holds.
///
/// ```
/// # use stackhost_sdk::{ensure, Result};
/// fn check(free: u64) -> Result<()> {
///     ensure!(free >= 1024, "only {free} bytes free");
///     Ok(())
/// }
/// assert!(check(4096).is_ok());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($($arg)+);
        }
    };
}

/// Return early with [`Error::Usage`]: the operator's arguments are wrong.
/// From `plan`, the host prints `error: MESSAGE` and exits with status 2.
///
/// ```
/// # use stackhost_sdk::{usage, Result};
/// fn keep(text: &str) -> Result<u32> {
///     match text.parse() {
///         Ok(n) => Ok(n),
///         Err(_) => usage!("--keep takes a number of exports, not `{text}`"),
///     }
/// }
/// assert!(keep("abc").is_err());
/// ```
#[macro_export]
macro_rules! usage {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::Usage(::std::format!($($arg)+)))
    };
}
