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

/// Size of the chunks an upload moves in, and how many are in flight
/// between the reading and the hashing thread.
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;
/// Written bytes are handed to the disk every this many, so that the final
/// fsync finds little left to write.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Streams `body` into a new file at `dest` and syncs it, returning its size
/// and sha256. The socket is read and the file written on this thread while
/// another thread hashes the same chunks, and each few MiB written are handed
/// to the disk at once: the hash and the writeback overlap the transfer
/// instead of following it (a 1 GiB upload took 2.4 s against 1.7 s for a
/// plain static server before; an upload must be on disk when answered).
fn copy_hashed(
    body: &mut dyn Read,
    dest: &Path,
    limit: u64,
) -> Result<(u64, String), ReceiveError> {
    let mut out = File::create(dest).map_err(ReceiveError::Io)?;
    let (to_hash, chunks) = crossbeam_channel::bounded::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
    let (give_back, free) = crossbeam_channel::bounded::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    for _ in 0..CHUNKS_IN_FLIGHT {
        // Cannot fail: the channel has room for all of them.
        let _ = give_back.send(vec![0u8; CHUNK]);
    }
    let (copied, digest) = std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for (chunk, n) in chunks {
                hasher.update(&chunk[..n]);
                // The reader may have stopped; then the chunk is not needed.
                let _ = give_back.send(chunk);
            }
            hasher.finalize()
        });
        let copied = copy_chunks(body, &mut out, limit, &free, &to_hash);
        drop(to_hash);
        (copied, hashing.join())
    });
    let size = copied?;
    let digest =
        digest.map_err(|_| ReceiveError::Io(io::Error::other("the hashing thread panicked")))?;
    out.sync_all().map_err(ReceiveError::Io)?;
    Ok((size, hex(&digest)))
}

/// The reading half of [`copy_hashed`]: each chunk read is written to `out`
/// and then passed on to be hashed.
fn copy_chunks(
    body: &mut dyn Read,
    out: &mut File,
    limit: u64,
    free: &crossbeam_channel::Receiver<Vec<u8>>,
    to_hash: &crossbeam_channel::Sender<(Vec<u8>, usize)>,
) -> Result<u64, ReceiveError> {
    let hasher_gone = || ReceiveError::Io(io::Error::other("the hashing thread stopped"));
    let mut size: u64 = 0;
    let mut handed_to_disk: u64 = 0;
    loop {
        let mut chunk = free.recv().map_err(|_| hasher_gone())?;
        let n = match read_full(body, &mut chunk) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) => return Err(ReceiveError::Io(e)),
        };
        size += n as u64;
        if size > limit {
            return Err(ReceiveError::TooLarge { limit });
        }
        out.write_all(&chunk[..n]).map_err(ReceiveError::Io)?;
        to_hash.send((chunk, n)).map_err(|_| hasher_gone())?;
        if size - handed_to_disk >= WRITEBACK_EVERY {
            start_writeback(out, handed_to_disk, size - handed_to_disk);
            handed_to_disk = size;
        }
    }
}

/// Reads until `buf` is full or the body ends; the count read (0 at the end).
fn read_full(body: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match body.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to
/// disk, without waiting. Only a hint: the final fsync is what guarantees.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is open for as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that arrives in uneven pieces, failing after `fail_after` bytes
    /// if set.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        fail_after: Option<usize>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_after.is_some_and(|n| self.at >= n) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "client went away",
                ));
            }
            let n = buf.len().min(7919).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn body(len: usize, fail_after: Option<usize>) -> Trickle {
        let data = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        Trickle {
            data,
            at: 0,
            fail_after,
        }
    }

    #[test]
    fn a_body_of_many_chunks_is_stored_whole_with_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        // Over the writeback step and not a multiple of the chunk size.
        let len = WRITEBACK_EVERY as usize + 3 * CHUNK + 5;
        let mut b = body(len, None);
        let (size, sha) = copy_hashed(&mut b, &dest, len as u64).unwrap();
        assert_eq!(size, len as u64);
        assert_eq!(sha, hex(&Sha256::digest(&b.data)));
        assert_eq!(fs::read(&dest).unwrap(), b.data);
    }

    #[test]
    fn a_body_over_the_limit_or_broken_off_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let over = copy_hashed(&mut body(3 * CHUNK, None), &dest, CHUNK as u64 + 1);
        assert!(
            matches!(over, Err(ReceiveError::TooLarge { .. })),
            "{over:?}"
        );
        let broken = copy_hashed(&mut body(3 * CHUNK, Some(CHUNK + 100)), &dest, u64::MAX);
        assert!(
            matches!(&broken, Err(ReceiveError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{broken:?}"
        );
        let (size, _) = copy_hashed(&mut body(0, None), &dest, 0).unwrap();
        assert_eq!(size, 0);
    }
}
