//! Why an expression was rejected, and where.

use std::fmt;

/// The class of a [`FilterError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A character that cannot start any token (`$`, `é`, …).
    UnexpectedCharacter,
    /// A word that is neither a keyword nor a value where one is expected.
    UnknownKeyword,
    /// A pcap-filter primitive or qualifier that Outpost filters do not implement
    /// (`ether host`, `ip[0]`, `gateway`, host names, …).
    Unsupported,
    /// Something that should be an IPv4 or IPv6 address is not one.
    BadAddress,
    /// Something that should be a number is not one (or is written in octal).
    BadNumber,
    /// A number outside its range: a port above 65535, a VLAN id above 4095, a protocol above
    /// 255, a number above 32 bits.
    OutOfRange,
    /// A prefix length longer than the address family allows (`/33`, `/129`).
    PrefixTooLong,
    /// A `net` whose address has bits set outside its prefix or mask (`10.1.2.3/8`).
    HostBitsSet,
    /// A `(` without its `)`, or a `)` without its `(`, or `[` without `]`.
    Unbalanced,
    /// A complete expression followed by more input.
    TrailingInput,
    /// A qualifier that makes no sense with the primitive (`tcp host`, `ip port`, `ip6 host`
    /// with an IPv4 address, `src proto`).
    BadQualifier,
    /// Anything else the grammar does not allow (a missing operand, a missing comparison).
    Syntax,
    /// An arithmetic error found at compile time (division by zero, shift by 32 or more).
    Arithmetic,
    /// The expression is nested too deeply or compiles to too many instructions.
    TooComplex,
}

/// A filter expression that could not be compiled: what is wrong and at which character.
///
/// `Display` shows the message, the expression and a caret under the column:
///
/// ```text
/// column 14: expected a port number after `port`, found `x`
///   udp dst port x
///                ^
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based character (not byte) column of the offending token; one past the last character
    /// when the expression ended too early.
    pub column: usize,
    /// What is wrong, without the column.
    pub message: String,
    /// The class of the error.
    pub kind: ErrorKind,
    /// The expression the error is about.
    pub expression: String,
}

impl FilterError {
    pub(crate) fn new(expression: &str, column: usize, kind: ErrorKind, message: String) -> FilterError {
        FilterError { column, message, kind, expression: expression.to_string() }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Control characters (tabs, newlines) would break the caret's alignment: show them as
        // spaces, one per character like the column count.
        let shown: String = self.expression.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        write!(
            f,
            "column {}: {}\n  {}\n  {}^",
            self.column,
            self.message,
            shown,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

impl std::error::Error for FilterError {}
