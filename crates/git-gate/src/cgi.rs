//! `git http-backend` as a CGI child: request body streamed to its stdin,
//! its stdout parsed for CGI headers and streamed back as the response.

use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::io::ReaderStream;

/// Response body type of the gate.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Upper bound on the CGI header block.
const MAX_CGI_HEADER: usize = 64 << 10;

/// A plain-text response (git shows `text/plain` error bodies to the user).
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    let mut r = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

/// What the CGI child is asked to do.
#[derive(Debug)]
pub struct CgiRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// `/<name>.git/info/refs` etc.
    pub path_info: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// Request headers (content type, encoding, Git-Protocol).
    pub headers: &'a http::HeaderMap,
    /// The peer address.
    pub remote_addr: String,
}

/// What follows the in-memory prefix of a request body.
#[derive(Debug)]
pub enum Rest {
    /// Nothing.
    None,
    /// The rest of the HTTP body, streamed as it arrives.
    Body(Incoming),
    /// A spooled file, from its current position.
    File(tokio::fs::File),
}

/// A running CGI child whose response is being streamed.
#[derive(Debug)]
pub struct Running {
    /// The response to send (body streams from the child's stdout).
    pub response: Response<Body>,
    /// The child, to wait on.
    pub child: Child,
    /// Resolves when the request body was fully fed (or failed: the
    /// message says why).
    pub feeder: tokio::task::JoinHandle<Result<u64, String>>,
    /// Collected stderr (bounded).
    pub stderr: tokio::task::JoinHandle<String>,
}

/// Spawns `git http-backend` for `req` and streams `prefix` then `rest`
/// into it (at most `limit` bytes in total).
pub async fn spawn(
    project_root: &Path,
    env: &[(String, String)],
    req: CgiRequest<'_>,
    prefix: Bytes,
    rest: Rest,
    limit: u64,
) -> Result<Running, String> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", req.method)
        .env("PATH_INFO", req.path_info)
        .env("QUERY_STRING", req.query)
        .env("REMOTE_ADDR", &req.remote_addr)
        .env("REMOTE_USER", "agent")
        .env("CONTENT_TYPE", header("content-type"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let encoding = header("content-encoding");
    if !encoding.is_empty() {
        cmd.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let proto = header("git-protocol");
    if !proto.is_empty() {
        cmd.env("GIT_PROTOCOL", proto);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("http-backend has no stdin")?;
    let stdout = child.stdout.take().ok_or("http-backend has no stdout")?;
    let mut stderr_pipe = child.stderr.take().ok_or("http-backend has no stderr")?;

    let feeder = tokio::spawn(async move {
        let mut total = prefix.len() as u64;
        if total > limit {
            return Err(format!("request body exceeds the {limit}-byte limit"));
        }
        stdin
            .write_all(&prefix)
            .await
            .map_err(|e| format!("writing to http-backend: {e}"))?;
        match rest {
            Rest::None => {}
            Rest::Body(mut body) => {
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("reading request body: {e}"))?;
                    if let Ok(data) = frame.into_data() {
                        total += data.len() as u64;
                        if total > limit {
                            return Err(format!("request body exceeds the {limit}-byte limit"));
                        }
                        stdin
                            .write_all(&data)
                            .await
                            .map_err(|e| format!("writing to http-backend: {e}"))?;
                    }
                }
            }
            Rest::File(file) => {
                total += tokio::io::copy(&mut file.take(limit.saturating_sub(total)), &mut stdin)
                    .await
                    .map_err(|e| format!("feeding the spooled push to http-backend: {e}"))?;
            }
        }
        stdin.shutdown().await.ok();
        Ok(total)
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr_pipe)
            .take(64 << 10)
            .read_to_end(&mut buf)
            .await;
        // Drain the rest so the child never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr_pipe, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).into_owned()
    });

    let mut out = BufReader::new(stdout);
    let mut builder = Response::builder();
    let mut seen = 0usize;
    loop {
        let mut line = String::new();
        let n = out
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading http-backend headers: {e}"))?;
        seen += n;
        if n == 0 {
            return Err("http-backend ended before sending headers".into());
        }
        if seen > MAX_CGI_HEADER {
            return Err("http-backend header block too large".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "http-backend sent a malformed header line {line:?}"
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            builder = builder.status(code.unwrap_or(StatusCode::BAD_GATEWAY));
        } else {
            builder = builder.header(name, value);
        }
    }
    let stream = ReaderStream::new(out).map_ok(Frame::data);
    let response = builder
        .body(StreamBody::new(stream).boxed())
        .map_err(|e| format!("bad http-backend response: {e}"))?;
    Ok(Running {
        response,
        child,
        feeder,
        stderr,
    })
}
