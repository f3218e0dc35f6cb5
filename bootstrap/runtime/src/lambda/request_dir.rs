//! `/tmp/$REQUEST_ID/{input,output}`: the one place an invocation writes, removed when the
//! invocation ends, whatever happened.

use std::path::{Path, PathBuf};

use super::error::{InvokeError, io};

/// An invocation's directory; dropping it removes it.
#[derive(Debug)]
pub(crate) struct RequestDir {
    pub(crate) root: PathBuf,
}

impl RequestDir {
    /// Makes `tmp/<request id, reduced to [A-Za-z0-9_-]>` with empty `input/` and `output/`.
    pub(crate) fn create(tmp: &Path, request_id: &str) -> Result<Self, InvokeError> {
        let safe: String = request_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let root = tmp.join(safe);
        let _ = std::fs::remove_dir_all(&root);
        for sub in ["input", "output"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(io(format!("cannot create {}/{sub}", root.display())))?;
        }
        Ok(Self { root })
    }

    pub(crate) fn input(&self) -> PathBuf {
        self.root.join("input")
    }

    pub(crate) fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    /// Where a command may leave an HTTP response's parts (`$SCAR_HTTP_RESPONSE_DIR`).
    pub(crate) fn http_response(&self) -> PathBuf {
        self.root.join("response")
    }

    /// A file of the request directory, written whole.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, InvokeError> {
        let path = self.root.join(name);
        std::fs::write(&path, bytes).map_err(io(format!("cannot write {}", path.display())))?;
        Ok(path)
    }

    /// Empties `input/` and `output/` between the records of one event.
    pub(crate) fn reset(&self) -> Result<(), InvokeError> {
        for dir in [self.input(), self.output()] {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(io(format!("cannot create {}", dir.display())))?;
        }
        Ok(())
    }
}

impl Drop for RequestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Empties a directory, keeping it.
pub(crate) fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_cannot_name_a_directory_outside_tmp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RequestDir::create(tmp.path(), "../../etc/x").unwrap();
        assert_eq!(dir.root, tmp.path().join("______etc_x"));
        assert!(dir.input().is_dir() && dir.output().is_dir());
        std::fs::write(dir.output().join("f"), "x").unwrap();
        dir.reset().unwrap();
        assert!(!dir.output().join("f").exists());
        let root = dir.root.clone();
        drop(dir);
        assert!(!root.exists(), "removed when the invocation ends");
    }
}
