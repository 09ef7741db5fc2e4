//! Reading the JSON-lines files the generators write (truth files): one record per line,
//! blank lines skipped, the first bad line reported by its 1-based number.

use std::io::{self, BufRead};

use serde::de::DeserializeOwned;

/// Every record of `reader`; `bad_line(line, error)` makes the error for the first line that
/// is not a `T`.
///
/// # Errors
/// An I/O error, or `bad_line`'s error for the first bad line.
pub(crate) fn read_json_lines<T: DeserializeOwned, E: From<io::Error>>(
    reader: impl BufRead,
    bad_line: impl Fn(usize, serde_json::Error) -> E,
) -> Result<Vec<T>, E> {
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(serde_json::from_str(&line).map_err(|source| bad_line(i + 1, source))?);
    }
    Ok(records)
}
