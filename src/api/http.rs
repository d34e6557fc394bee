//! The HTTP glue (rouille): routes, body limits, and turning every error,
//! and every panic, into a precise answer rather than rouille's HTML page.
//!
//! Routes: `POST /RPC2`, `POST /` (XML-RPC); `GET /healthz`;
//! `POST /files`, `GET|HEAD|DELETE /files/{FileID}` (contract §5).

use super::dispatch::Api;
use super::range::{self, Wanted};
use crate::files::{Files, ReceiveError};
use crate::job::FileRecord;
use crate::protocol::xmlrpc::{self, Limits};
use crate::protocol::Fault;
use crate::store::{FileDelete, Store};
use rouille::{Request, Response, ResponseBody};
use std::io::{Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Largest XML-RPC request body: far above any real call, far below harm.
pub const MAX_RPC_BODY: u64 = 4 * 1024 * 1024;

/// Everything the routes need.
pub struct Service {
    pub api: Api,
    pub store: Arc<dyn Store>,
    pub files: Files,
    /// True once the engine is ready (store reachable, recovery done) and
    /// until it starts shutting down: /healthz says 200.
    pub ready: Arc<AtomicBool>,
    pub limits: Limits,
}

impl Service {
    /// Answers one request; never panics outward.
    pub fn handle(&self, request: &Request) -> Response {
        let is_rpc = matches!(request.url().as_str(), "/" | "/RPC2");
        match catch_unwind(AssertUnwindSafe(|| self.route(request))) {
            Ok(response) => response,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!(
                    "panic while answering {} {}: {what}",
                    request.method(),
                    request.url()
                );
                if is_rpc {
                    fault(&Fault::new(
                        Fault::INTERNAL_ERROR,
                        "internal error; the engine logged the details",
                    ))
                } else {
                    text(500, "internal error; the engine logged the details")
                }
            }
        }
    }

    fn route(&self, request: &Request) -> Response {
        let url = request.url();
        let method = request.method();
        match (method, url.as_str()) {
            ("POST", "/" | "/RPC2") => self.rpc(request),
            (_, "/" | "/RPC2") => text(405, "XML-RPC endpoint: use POST with a methodCall body")
                .with_additional_header("Allow", "POST"),
            ("GET" | "HEAD", "/healthz") => {
                if self.ready.load(Ordering::SeqCst) && self.store.ping().is_ok() {
                    text(200, "ok")
                } else {
                    text(
                        503,
                        "not ready: starting, shutting down, or the store is unreachable",
                    )
                }
            }
            ("POST", "/files") => self.upload(request),
            (_, "/files") => {
                text(405, "use POST to upload a file").with_additional_header("Allow", "POST")
            }
            (_, path) if path.starts_with("/files/") => {
                let id = &path["/files/".len()..];
                match method {
                    "GET" | "HEAD" => self.download(request, id),
                    "DELETE" => self.delete_file(id),
                    _ => text(405, "use GET, HEAD or DELETE on a file")
                        .with_additional_header("Allow", "GET, HEAD, DELETE"),
                }
            }
            _ => text(404, "not found; XML-RPC is served at POST /RPC2"),
        }
    }

    fn rpc(&self, request: &Request) -> Response {
        if let Some(encoding) = request
            .header("Content-Encoding")
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return fault(&Fault::new(
                Fault::INVALID_REQUEST,
                format!(
                    "Content-Encoding '{}' is not supported; send the body uncompressed",
                    crate::shorten(encoding, 32)
                ),
            ));
        }
        let declared = declared_length(request);
        if declared.is_some_and(|n| n > MAX_RPC_BODY) {
            return too_large(MAX_RPC_BODY);
        }
        let Some(body) = request.data() else {
            return fault(&Fault::new(
                Fault::INTERNAL_ERROR,
                "request body already read",
            ));
        };
        // Sized from the declared length (checked above), so the body is read
        // without growing the buffer.
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize + 1);
        if let Err(e) = body.take(MAX_RPC_BODY + 1).read_to_end(&mut bytes) {
            return fault(&Fault::new(
                Fault::INVALID_REQUEST,
                format!("could not read the request body: {e}"),
            ));
        }
        if bytes.len() as u64 > MAX_RPC_BODY {
            return too_large(MAX_RPC_BODY);
        }
        let reply = xmlrpc::parse_call(&bytes, &self.limits).and_then(|call| self.api.call(&call));
        match reply {
            Ok(value) => xml(xmlrpc::write_response(&value)),
            Err(f) => fault(&f),
        }
    }

    fn upload(&self, request: &Request) -> Response {
        let limit = self.api.config().upload_limit;
        if declared_length(request).is_some_and(|n| n > limit) {
            return too_large(limit);
        }
        let is_multipart = request
            .header("Content-Type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
        let mut name = request.get_param("name").unwrap_or_default();
        let received = if is_multipart {
            let Ok(mut form) = rouille::input::multipart::get_multipart_input(request) else {
                return text(400, "multipart/form-data body without a boundary");
            };
            let mut received = None;
            while let Some(mut field) = form.next() {
                if field.headers.filename.is_none() {
                    continue;
                }
                if received.is_some() {
                    return text(400, "send one file per upload");
                }
                if name.is_empty() {
                    name = field.headers.filename.clone().unwrap_or_default();
                }
                received = Some(self.files.receive(&mut field.data, limit));
            }
            match received {
                Some(r) => r,
                None => return text(400, "the multipart/form-data body has no file part"),
            }
        } else {
            match request.data() {
                Some(mut body) => self.files.receive(&mut body, limit),
                None => return text(500, "request body already read"),
            }
        };
        let stored = match received {
            Ok(stored) => stored,
            Err(ReceiveError::TooLarge { limit }) => return too_large(limit),
            Err(ReceiveError::Io(e)) => {
                log::warn!("upload failed: {e}");
                return text(400, &format!("upload failed, nothing was kept: {e}"));
            }
        };
        let record = FileRecord {
            id: stored.id.clone(),
            name: display_name(&name),
            size: stored.size as i64,
            sha256: stored.sha256.clone(),
            owner_job: None,
            created_at: SystemTime::now(),
        };
        if let Err(e) = self.store.insert_file(&record) {
            let _ = self.files.remove(&stored.id);
            let code = if e.is_transient() { 503 } else { 500 };
            return text(code, &format!("file not recorded, nothing was kept: {e}"));
        }
        log::info!(
            "file {}: received, {} bytes, sha256 {}",
            stored.id,
            stored.size,
            stored.sha256
        );
        Response::text(stored.id.clone())
            .with_status_code(201)
            .with_additional_header("Location", format!("/files/{}", stored.id))
            .with_additional_header("X-Content-SHA256", stored.sha256)
    }

    fn download(&self, request: &Request, id: &str) -> Response {
        let record = match self.find_file(id) {
            Ok(r) => r,
            Err(response) => return response,
        };
        let Some(path) = self.files.path_of(id) else {
            return text(404, "no such file");
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                log::error!("file {id}: recorded but not readable: {e}");
                return text(500, "the file is recorded but missing on disk");
            }
        };
        let size = file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(record.size as u64);
        let (status, start, len) = match range::parse(request.header("Range"), size) {
            Wanted::Whole => (200, 0, size),
            Wanted::Part { start, end } => (206, start, end - start + 1),
            Wanted::Unsatisfiable => {
                return text(416, "range not satisfiable")
                    .with_additional_header("Content-Range", format!("bytes */{size}"));
            }
        };
        if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
            return text(500, "could not seek in the file");
        }
        let mut response = Response {
            status_code: status,
            headers: vec![
                ("Content-Type".into(), "application/octet-stream".into()),
                ("Accept-Ranges".into(), "bytes".into()),
                ("X-Content-SHA256".into(), record.sha256.into()),
                (
                    "Content-Disposition".into(),
                    content_disposition(&record.name).into(),
                ),
            ],
            data: ResponseBody::from_reader_and_size(file.take(len), len as usize),
            upgrade: None,
        };
        if status == 206 {
            response = response.with_additional_header(
                "Content-Range",
                format!("bytes {start}-{}/{size}", start + len - 1),
            );
        }
        response
    }

    fn delete_file(&self, id: &str) -> Response {
        if !Files::is_valid_id(id) {
            return text(404, "no such file");
        }
        match self.store.delete_file(id) {
            Ok(FileDelete::Deleted) => {
                if let Err(e) = self.files.remove(id) {
                    log::warn!("file {id}: row deleted but the file stayed: {e}");
                }
                Response::empty_204()
            }
            Ok(FileDelete::NotFound) => text(404, "no such file"),
            Ok(FileDelete::InUse(job)) => {
                text(409, &format!("job '{job}' has not ended and still needs this file; cancel or delete the job first"))
            }
            Err(e) => store_error(e),
        }
    }

    fn find_file(&self, id: &str) -> Result<FileRecord, Response> {
        if !Files::is_valid_id(id) {
            return Err(text(404, "no such file"));
        }
        match self.store.get_file(id) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(text(404, "no such file")),
            Err(e) => Err(store_error(e)),
        }
    }
}

fn declared_length(request: &Request) -> Option<u64> {
    request
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok())
}

fn store_error(e: crate::store::Error) -> Response {
    if e.is_transient() {
        text(503, &format!("storage is unavailable ({e}); retry later"))
    } else {
        log::error!("store error: {e}");
        text(
            500,
            "internal error in the store; the engine logged the details",
        )
    }
}

/// A client's file name, kept for display only: no path, no control characters.
fn display_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    clean.trim().to_owned()
}

fn content_disposition(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "attachment".into()
    } else {
        format!("attachment; filename=\"{safe}\"")
    }
}

fn xml(body: Vec<u8>) -> Response {
    Response::from_data("text/xml", body)
}

fn fault(f: &Fault) -> Response {
    xml(xmlrpc::write_fault(f))
}

fn text(status: u16, message: &str) -> Response {
    Response::text(format!("{message}\n")).with_status_code(status)
}

fn too_large(limit: u64) -> Response {
    text(
        413,
        &format!("request body larger than the limit of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_for_display_only() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\x\\song.mp3"), "song.mp3");
        assert_eq!(display_name("a\u{0}b\nc.mp3"), "abc.mp3");
        assert_eq!(
            content_disposition("a\"b.mp3"),
            "attachment; filename=\"a_b.mp3\""
        );
    }
}
