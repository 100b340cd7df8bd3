//! The JSON Lines file: every record as one line (all fields), appended by the writer thread,
//! rotated by size (`PATH` → `PATH.1` → … → `PATH.KEEP`, the oldest deleted).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::logs::FileSinkConfig;

pub struct FileSink {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl FileSink {
    pub fn new(cfg: &FileSinkConfig) -> Self {
        FileSink {
            path: cfg.path.clone(),
            max_size: cfg.max_size,
            keep: cfg.keep,
            file: None,
            size: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole lines, rotating first when they would take the file past its size (a
    /// batch larger than the size starts a file of its own).
    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + lines.len() as u64 > self.max_size {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = file.write_all(lines) {
            // Reopened on the next batch (the file may have been removed or the disk freed).
            self.file = None;
            return Err(e);
        }
        self.size += lines.len() as u64;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // A missing older file is fine: fewer rotations have happened than `keep`.
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let mut sink = FileSink::new(&FileSinkConfig {
            path: path.clone(),
            max_size: 20,
            keep: 2,
        });
        for i in 0..5 {
            sink.write(format!("{{\"n\":{i:07}}}\n").as_bytes())
                .unwrap();
        }
        // 14 bytes a line: one per file; the current and two rotated remain.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "{\"n\":0000004}\n");
        assert_eq!(read(&sink.rotated(1)), "{\"n\":0000003}\n");
        assert_eq!(read(&sink.rotated(2)), "{\"n\":0000002}\n");
        assert!(!sink.rotated(3).exists());
    }

    #[test]
    fn an_existing_file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut sink = FileSink::new(&FileSinkConfig {
            path: path.clone(),
            max_size: 1 << 20,
            keep: 1,
        });
        sink.write(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
    }
}
