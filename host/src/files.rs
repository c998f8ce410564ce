//! Files wasmig writes: created under a temporary name beside their final path, written,
//! flushed to disk and renamed into place, so a reader never sees half a file and a crash
//! never leaves one. Files holding data or secrets (dumps, ledger sidecars) are created
//! `0600` and their directories `0700`; files meant for other programs (the metrics file a
//! node-exporter running as another user reads, the lock file committed to git) are `0644`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the owner (`0600`): dumps, ledger rows, anything with tenant data or secrets.
    Private,
    /// Everyone may read (`0644`): metrics, the lock file.
    Readable,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Readable => 0o644,
        }
    }
}

/// Creates `dir` and its missing parents `0700` (an existing directory keeps its mode).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// A file being written under a temporary name; [`Pending::commit`] moves it into place,
/// dropping it uncommitted removes it.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Pending {
    /// Creates the temporary file for `dest` (new, with `access`'s mode whatever the umask).
    pub fn create(dest: &Path, access: Access) -> std::io::Result<(Pending, File)> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dest.with_file_name(format!(".{name}.{nonce}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(access.mode())
            .open(&tmp)?;
        // The umask may have taken bits away from a readable file; never adds any.
        if access == Access::Readable {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(access.mode()))?;
        }
        Ok((
            Pending {
                tmp,
                dest: dest.to_owned(),
                done: false,
            },
            file,
        ))
    }

    /// The temporary path (for a child program such as `pg_dump --file`, which keeps the
    /// mode of the file it truncates).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes the file to disk and renames it into place (then flushes the directory).
    pub fn commit(mut self) -> std::io::Result<()> {
        File::open(&self.tmp)?.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)?;
        self.done = true;
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically with `access`'s mode.
pub fn write_atomic(dest: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    let (pending, mut file) = Pending::create(dest, access)?;
    file.write_all(bytes)?;
    drop(file);
    pending.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("x.dump");
        write_atomic(&f, b"one", Access::Private).unwrap();
        write_atomic(&f, b"two", Access::Private).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(mode(&f), 0o600);
        let r = sub.join("m.prom");
        write_atomic(&r, b"m 1\n", Access::Readable).unwrap();
        assert_eq!(mode(&r), 0o644);
        // An uncommitted file leaves nothing behind.
        let (p, _) = Pending::create(&sub.join("y"), Access::Private).unwrap();
        drop(p);
        let left: Vec<_> = std::fs::read_dir(&sub).unwrap().collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
