//! The engine's files on disk: uploaded inputs, produced outputs and per-job
//! work directories, all under the data dir. Every path built from client
//! input is built here, from validated IDs only; a client's file name is
//! never used as a path.
//!
//! Layout: `<data_dir>/files/<FileID>` (complete files only),
//! `<data_dir>/tmp/` (uploads in flight, renamed into `files/` when whole),
//! `<data_dir>/work/job-<JobID>/` (a running job's scratch space).
//!
//! May use: `job`.

use crate::job::JobId;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A file as written: its new ID, size and sha256 (lower-case hex).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub id: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug)]
pub enum ReceiveError {
    /// The body passed the limit; nothing was kept.
    TooLarge { limit: u64 },
    /// Reading the body or writing the disk failed; nothing was kept.
    Io(io::Error),
}

impl std::fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReceiveError::TooLarge { limit } => {
                write!(f, "file is larger than the upload limit of {limit} bytes")
            }
            ReceiveError::Io(e) => write!(f, "upload failed: {e}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Files {
    files: PathBuf,
    tmp: PathBuf,
    work: PathBuf,
}

impl Files {
    /// Opens (creating) the layout under `data_dir`, and clears `tmp/`:
    /// anything there is an upload a crash interrupted.
    pub fn open(data_dir: &Path) -> io::Result<Files> {
        let files = Files {
            files: data_dir.join("files"),
            tmp: data_dir.join("tmp"),
            work: data_dir.join("work"),
        };
        for dir in [&files.files, &files.tmp, &files.work] {
            fs::create_dir_all(dir)?;
        }
        for entry in fs::read_dir(&files.tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(files)
    }

    /// True for the IDs this engine hands out (a UUID's 36 characters).
    /// Anything else is never turned into a path.
    pub fn is_valid_id(id: &str) -> bool {
        id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    }

    /// Where the file `id` lives, if `id` is a well-formed FileID. The file
    /// may not exist.
    pub fn path_of(&self, id: &str) -> Option<PathBuf> {
        Self::is_valid_id(id).then(|| self.files.join(id))
    }

    /// Streams `body` to a temporary file, hashing as it goes, and renames it
    /// into place only when whole and within `limit`.
    pub fn receive(&self, body: &mut dyn Read, limit: u64) -> Result<Stored, ReceiveError> {
        let id = uuid::Uuid::new_v4().to_string();
        let tmp = self.tmp.join(&id);
        let result = copy_hashed(body, &tmp, limit).and_then(|(size, sha256)| {
            fs::rename(&tmp, self.files.join(&id)).map_err(ReceiveError::Io)?;
            Ok(Stored { id, size, sha256 })
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Moves a file a job produced into the store, hashing it.
    pub fn adopt(&self, produced: &Path) -> io::Result<Stored> {
        let id = uuid::Uuid::new_v4().to_string();
        let (size, sha256) = hash_file(produced)?;
        let dest = self.files.join(&id);
        if fs::rename(produced, &dest).is_err() {
            // Another filesystem: copy, then drop the original.
            fs::copy(produced, &dest)?;
            let _ = fs::remove_file(produced);
        }
        Ok(Stored { id, size, sha256 })
    }

    /// Removes a stored file; a missing file is not an error.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match self.path_of(id) {
            Some(path) => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// A fresh, empty work directory for `job` (an old one is cleared first).
    /// The `job-` prefix keeps IDs such as `..` from naming anything else.
    pub fn fresh_work_dir(&self, job: &JobId) -> io::Result<PathBuf> {
        let dir = self.work_dir(job);
        self.remove_work_dir(job)?;
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn remove_work_dir(&self, job: &JobId) -> io::Result<()> {
        match fs::remove_dir_all(self.work_dir(job)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn work_dir(&self, job: &JobId) -> PathBuf {
        self.work.join(format!("job-{}", job.as_str()))
    }
}

fn copy_hashed(
    body: &mut dyn Read,
    dest: &Path,
    limit: u64,
) -> Result<(u64, String), ReceiveError> {
    let mut out = File::create(dest).map_err(ReceiveError::Io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReceiveError::Io(e)),
        };
        size += n as u64;
        if size > limit {
            return Err(ReceiveError::TooLarge { limit });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(ReceiveError::Io)?;
    }
    out.sync_all().map_err(ReceiveError::Io)?;
    Ok((size, hex(&hasher.finalize())))
}

/// Size and sha256 of a file on disk.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
