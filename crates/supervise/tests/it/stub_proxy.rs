//! A stand-in for egress-proxy's introspection endpoint: a tiny hyper
//! server on 127.0.0.1:0 that answers the absolute-form
//! `GET http://_egress.local/allowlist` with a fixed table and records what
//! it was asked.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub struct StubProxy {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StubProxy {
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StubProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(table: Value) -> StubProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let body = Bytes::from(table.to_string());
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        log.lock().unwrap().push(format!(
                            "{} {} host={host}",
                            req.method(),
                            req.uri()
                        ));
                        let ok = *req.uri() == "http://_egress.local/allowlist";
                        let resp = if ok {
                            http::Response::builder()
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(body.clone()))
                        } else {
                            http::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"no")))
                        };
                        async move { Ok::<_, Infallible>(resp.unwrap()) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    StubProxy { addr, seen, task }
}
