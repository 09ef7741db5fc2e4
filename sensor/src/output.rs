//! JSON-lines outputs: a file or standard output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// Where a stream of JSON records goes.
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    name: String,
    /// Records written.
    pub written: u64,
    line: Vec<u8>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").field("name", &self.name).field("written", &self.written).finish()
    }
}

impl JsonLines {
    /// Opens `target`: `-` is standard output, anything else a file (created or truncated).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open(target: &Path) -> anyhow::Result<JsonLines> {
        let (w, name): (Box<dyn Write + Send>, String) = if target == Path::new("-") {
            (Box::new(io::stdout()), "standard output".into())
        } else {
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let f = File::create(target).with_context(|| format!("cannot create {}", target.display()))?;
            (Box::new(f), target.display().to_string())
        };
        Ok(JsonLines {
            out: BufWriter::with_capacity(1 << 16, w),
            name,
            written: 0,
            line: Vec::with_capacity(512),
        })
    }

    /// Opens `target` if given.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open_opt(target: Option<&PathBuf>) -> anyhow::Result<Option<JsonLines>> {
        target.map(|t| JsonLines::open(t)).transpose()
    }

    /// Writes one record as a line.
    ///
    /// # Errors
    /// Serialization or I/O errors, naming the output.
    pub fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).context("cannot encode record")?;
        self.line.push(b'\n');
        self.out.write_all(&self.line).with_context(|| format!("cannot write to {}", self.name))?;
        self.written += 1;
        Ok(())
    }

    /// Writes one line that `encode` appends to an empty buffer (a record with its own
    /// hand-written JSON encoder, e.g. [`outpost_flowmeter::FlowJson::write_json`]).
    pub fn write_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> anyhow::Result<()> {
        self.line.clear();
        encode(&mut self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line).with_context(|| format!("cannot write to {}", self.name))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes buffered lines.
    ///
    /// # Errors
    /// I/O errors, naming the output.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write to {}", self.name))
    }
}
