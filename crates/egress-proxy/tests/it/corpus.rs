//! The inspection corpus, through the real binary: every case in
//! `tests/corpus/*.toml` is sent by a real client through the spawned
//! `egress-proxy` (DLP and injection action `block`, every opt-in
//! detector on) to a local TLS upstream on 127.0.0.1, and the verdict is
//! read from what the client gets back. The test prints a table per
//! technique (caught, missed, false blocks) and fails when the targets
//! are missed: at least 95% of malicious cases caught, at most 1% false
//! blocks on the benign controls, none on the realistic traffic sample.
//!
//! Every planted secret is generated here at run time from a template
//! (`{{aws_id}}`, `{{b64:{{hex:{{gh_pat}}}}}}`), so the corpus files hold
//! no credential-shaped literal. See docs/inspection.md.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_egress-proxy");

// ------------------------------------------------------------------ format

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    case: Vec<Case>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Block,
    Pass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    technique: String,
    expect: Expect,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    headers: Vec<String>,
    body: Option<String>,
    body_file: Option<String>,
    /// Compress the request body: gzip, deflate, br, zstd, or
    /// `gzip-corrupt` (labelled gzip, not gzip).
    encoding: Option<String>,
    response: Option<Resp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resp {
    content_type: String,
    body: Option<String>,
    body_file: Option<String>,
    /// Chunked, in several frames, no Content-Length.
    #[serde(default)]
    streamed: bool,
    encoding: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_host() -> String {
    "api.corpus.test".into()
}
fn default_path() -> String {
    "/".into()
}

/// A case with its templates expanded.
#[derive(Debug, Clone)]
struct Ready {
    case: Case,
    file: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    response: Option<(String, Vec<u8>, bool, Option<String>)>,
}

// ------------------------------------------------------------- generators

struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Self {
        let h = Sha256::digest(seed.as_bytes());
        Rng(u64::from_le_bytes(h[..8].try_into().unwrap()) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n)
            .map(|_| a[(self.next() % a.len() as u64) as usize] as char)
            .collect()
    }
    /// `n` distinct characters (keys whose rule has an entropy floor).
    fn distinct(&mut self, alphabet: &str, n: usize) -> String {
        let mut a = alphabet.as_bytes().to_vec();
        for i in (1..a.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            a.swap(i, j);
        }
        String::from_utf8(a[..n].to_vec()).unwrap()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64U: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEXA: &str = "0123456789abcdef";
const UP32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0;
    for (i, &c) in d.iter().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn base58(data: &[u8]) -> String {
    const A: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &b in data {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| A[d as usize] as char))
        .collect()
}

/// A synthetic secret (or a benign shape) by name.
fn generate(name: &str, r: &mut Rng) -> String {
    let c = |p: &[&str]| p.concat();
    match name {
        "aws_id" => c(&["AK", "IA", &r.distinct(UP32, 16)]),
        "aws_secret" => r.pick(B64A, 40),
        "gh_pat" => c(&["gh", "p_", &r.pick(ALNUM, 36)]),
        "gh_fine" => c(&[
            "github",
            "_pat_",
            &r.pick(ALNUM, 22),
            "_",
            &r.pick(ALNUM, 59),
        ]),
        "gh_app" => c(&["gh", "s_", &r.pick(ALNUM, 36)]),
        "gl_pat" => c(&["gl", "pat-", &r.pick(ALNUM, 20)]),
        "slack_bot" => c(&["xo", "xb-", "1234567890-", &r.pick(ALNUM, 24)]),
        "stripe" => c(&["sk", "_live_", &r.pick(ALNUM, 32)]),
        "stripe_test" => c(&["sk", "_test_", &r.pick(ALNUM, 32)]),
        "anthropic" => c(&["sk-", "ant-api03-", &r.pick(B64U, 93), "AA"]),
        "openai" => c(&[
            "sk-",
            "proj-",
            &r.pick(B64U, 60),
            "T3Blbk",
            "FJ",
            &r.pick(B64U, 60),
        ]),
        "google" => c(&["AI", "za", &r.pick(B64U, 35)]),
        "npm" => c(&["np", "m_", &r.pick(ALNUM, 36)]),
        "hf" => c(&[
            "h",
            "f_",
            &r.pick("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34),
        ]),
        "sendgrid" => c(&["S", "G.", &r.pick(ALNUM, 22), ".", &r.pick(ALNUM, 43)]),
        "dop" => c(&["do", "p_v1_", &r.pick(HEXA, 64)]),
        "vault" => c(&["hv", "s.", &r.pick(ALNUM, 90)]),
        "doppler" => c(&["d", "p.pt.", &r.pick(ALNUM, 43)]),
        "groq" => c(&["gs", "k_", &r.pick(ALNUM, 52)]),
        "shopify" => c(&["shp", "at_", &r.pick(HEXA, 32)]),
        "jwt" => c(&[
            "ey",
            "JhbGciOiJIUzI1NiJ9.ey",
            "JzdWIiOiI",
            &r.pick(B64U, 24),
            ".",
            &r.pick(B64U, 43),
        ]),
        "pem" => {
            let body: Vec<String> = (0..6).map(|_| r.pick(B64A, 64)).collect();
            c(&[
                "-----BEGIN",
                " RSA PRIVATE KEY-----\n",
                &body.join("\n"),
                "\n-----END",
                " RSA PRIVATE KEY-----",
            ])
        }
        "random40" => r.pick(ALNUM, 40),
        "random24" => r.distinct(ALNUM, 24),
        "hexsecret" => r.pick(HEXA, 48),
        "card" => {
            let mut s = String::from("4");
            while s.len() < 15 {
                s.push((b'0' + (r.next() % 10) as u8) as char);
            }
            (b'0'..=b'9')
                .map(|d| format!("{s}{}", d as char))
                .find(|x| luhn_ok(x.as_bytes()))
                .unwrap()
        }
        "iban" => {
            let bban: String = (0..18)
                .map(|_| (b'0' + (r.next() % 10) as u8) as char)
                .collect();
            let probe = format!("{bban}131400");
            let m = probe
                .bytes()
                .fold(0u32, |a, d| (a * 10 + u32::from(d - b'0')) % 97);
            format!("DE{:02}{bban}", 98 - m)
        }
        "wif" => {
            let mut p = vec![0x80u8];
            p.extend(r.bytes(32));
            p.push(1);
            let sum = Sha256::digest(Sha256::digest(&p));
            p.extend_from_slice(&sum[..4]);
            base58(&p)
        }
        "bip39" => mnemonic(&r.bytes(16)),
        "bip39_24" => mnemonic(&r.bytes(32)),
        "bip39_bad" => loop {
            // Twelve list words whose checksum does not verify (15 in 16).
            let idx: Vec<u16> = (0..12).map(|_| (r.next() % 2048) as u16).collect();
            let words: Vec<&str> = idx.iter().map(|&i| bip39_words()[usize::from(i)]).collect();
            let phrase = words.join(" ");
            let Some(entropy) = mnemonic_entropy(&idx) else {
                break phrase;
            };
            if mnemonic(&entropy) != phrase {
                break phrase;
            }
        },
        "env_dump" => c(&[
            "HOSTNAME=claude-bottle-agent-7k2qx\nHOME=/home/agent\nPWD=/work\n",
            "HTTPS_PROXY=http://egress:9099\nNODE_EXTRA_CA_CERTS=/etc/bottle/ca.pem\n",
            "PATH=/usr/local/bin:/usr/bin:/bin\nSHLVL=1\nDEPLOY_TOKEN=",
            &r.pick(ALNUM, 20),
            "\n",
        ]),
        "uuid" => {
            let h = r.pick(HEXA, 32);
            format!(
                "{}-{}-4{}-a{}-{}",
                &h[..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..]
            )
        }
        "sha256" => r.pick(HEXA, 64),
        "sha1" => r.pick(HEXA, 40),
        "nonce" => r.pick(ALNUM, 32),
        "png_b64" => {
            let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
            png.extend(r.bytes(1200));
            data_encoding::BASE64.encode(&png)
        }
        "blob" => data_encoding::BASE64.encode(&r.bytes(3000)),
        other => panic!("unknown generator {other:?}"),
    }
}

fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn compress(enc: &str, d: &[u8]) -> Vec<u8> {
    if enc.contains(',') {
        // A chain, applied in the order listed (Content-Encoding order).
        return enc
            .split(',')
            .map(str::trim)
            .fold(d.to_vec(), |acc, e| compress(e, &acc));
    }
    match enc {
        "gzip" => gzip(d),
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(d).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(d, 3).unwrap(),
        "gzip-corrupt" => b"this is labelled gzip but is not".to_vec(),
        other => panic!("unknown encoding {other:?}"),
    }
}

/// A transform applied to already-expanded text.
fn transform(f: &str, arg: &str) -> String {
    let b = arg.as_bytes();
    let pairs = || b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>();
    match f {
        "b64" => data_encoding::BASE64.encode(b),
        "b64url" => data_encoding::BASE64URL_NOPAD.encode(b),
        "b64nopad" => data_encoding::BASE64_NOPAD.encode(b),
        "b64wrap" => data_encoding::BASE64
            .encode(b)
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n"),
        "b32" => data_encoding::BASE32.encode(b),
        "b32lower" => data_encoding::BASE32_NOPAD.encode(b).to_lowercase(),
        "hex" => data_encoding::HEXLOWER.encode(b),
        "HEX" => data_encoding::HEXUPPER.encode(b),
        "hexcolon" => pairs().join(":"),
        "hexdash" => pairs().join("-"),
        "hexspace" => pairs().join(" "),
        "xesc" => pairs().iter().map(|p| format!("\\x{p}")).collect(),
        "pct" => b.iter().map(|x| format!("%{x:02X}")).collect(),
        "pct2" => transform("pct", arg).replace('%', "%25"),
        "pct3" => transform("pct2", arg).replace('%', "%25"),
        "jsonu" => b.iter().map(|x| format!("\\u{x:04x}")).collect(),
        "htmlent" => b.iter().map(|x| format!("&#{x};")).collect(),
        "gzb64" => data_encoding::BASE64.encode(&gzip(b)),
        "jsonstr" => serde_json::to_string(arg)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        "rev" => arg.chars().rev().collect(),
        "rot13" => arg
            .chars()
            .map(|c| match c {
                'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
                'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
                _ => c,
            })
            .collect(),
        "spaced" => arg.chars().map(|c| format!("{c} ")).collect(),
        "repeat" => {
            let (n, s) = arg.split_once(':').unwrap();
            s.repeat(n.parse().unwrap())
        }
        "part" => {
            // part:I/N:text — the I-th of N near-equal pieces (1-based).
            let (spec, text) = arg.split_once(':').unwrap();
            let (i, n) = spec.split_once('/').unwrap();
            let (i, n): (usize, usize) = (i.parse().unwrap(), n.parse().unwrap());
            let len = text.len();
            let (s, e) = ((i - 1) * len / n, i * len / n);
            text[s..e].to_owned()
        }
        other => panic!("unknown transform {other:?}"),
    }
}

/// Expands `{{name}}` and `{{fn:arg}}`, innermost first. A generator
/// yields the same value everywhere in one case (`{{part:1/2:{{aws_id}}}}`
/// and `{{part:2/2:{{aws_id}}}}` are the two halves of one key).
fn expand(text: &str, case_id: &str, cache: &mut BTreeMap<String, String>) -> String {
    let mut s = text.to_owned();
    // The rightmost `{{` that opens a template (a name follows) is an
    // innermost one; its template ends at the next `}}`. JSON braces in
    // the text around templates are left alone.
    while let Some(open) = s.rmatch_indices("{{").map(|(i, _)| i).find(|&i| {
        s[i + 2..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        let Some(len) = s[open..].find("}}") else {
            panic!("{case_id}: unterminated template in {text:?}")
        };
        let close = open + len;
        let inner = s[open + 2..close].to_owned();
        let value = match inner.split_once(':') {
            Some((f, arg)) => transform(f, arg),
            None => cache
                .entry(inner.clone())
                .or_insert_with(|| generate(&inner, &mut Rng::new(&format!("{case_id}/{inner}"))))
                .clone(),
        };
        s.replace_range(open..close + 2, &value);
    }
    s
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn load(file: &str) -> Vec<Ready> {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: CorpusFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let read = |name: &str| std::fs::read_to_string(corpus_dir().join(name)).unwrap();
    let mut ids = BTreeSet::new();
    parsed
        .case
        .into_iter()
        .map(|case| {
            assert!(
                ids.insert(case.id.clone()),
                "{file}: duplicate id {}",
                case.id
            );
            let mut cache = BTreeMap::new();
            let mut x = |t: &str| expand(t, &case.id, &mut cache);
            let host = x(&case.host);
            let path = x(&case.path);
            let headers = case
                .headers
                .iter()
                .map(|h| {
                    let h = x(h);
                    let (k, v) = h.split_once(':').unwrap();
                    (k.trim().to_owned(), v.trim().to_owned())
                })
                .collect();
            let raw = match (&case.body, &case.body_file) {
                (Some(b), _) => x(b),
                (None, Some(f)) => x(&read(f)),
                (None, None) => String::new(),
            };
            let body = match &case.encoding {
                Some(e) => compress(e, raw.as_bytes()),
                None => raw.into_bytes(),
            };
            let response = case.response.as_ref().map(|r| {
                let text = match (&r.body, &r.body_file) {
                    (Some(b), _) => x(b),
                    (None, Some(f)) => x(&read(f)),
                    (None, None) => String::new(),
                };
                let bytes = match &r.encoding {
                    Some(e) => compress(e, text.as_bytes()),
                    None => text.into_bytes(),
                };
                (
                    r.content_type.clone(),
                    bytes,
                    r.streamed,
                    r.encoding.clone(),
                )
            });
            Ready {
                file: file.to_owned(),
                host,
                path,
                headers,
                body,
                response,
                case,
            }
        })
        .collect()
}

// ---------------------------------------------------------------- upstream

type Responses = Arc<BTreeMap<String, (String, Vec<u8>, bool, Option<String>)>>;

async fn upstream_handler(responses: Responses, req: Request<Incoming>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    // Read the whole request body (so an aborted upload is noticed).
    let _ = req.into_body().collect().await;
    let Some((ct, body, streamed, enc)) = path
        .strip_prefix("/r/")
        .and_then(|id| responses.get(id))
        .cloned()
    else {
        return Response::new(
            Full::new(Bytes::from_static(b"ok"))
                .map_err(|n| match n {})
                .boxed(),
        );
    };
    let mut resp = if streamed {
        let third = body.len() / 3 + 1;
        let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = body
            .chunks(third)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
    } else {
        let n = body.len();
        let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
        r.headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        r
    };
    resp.headers_mut()
        .insert("content-type", ct.parse().unwrap());
    if let Some(e) = enc {
        resp.headers_mut()
            .insert("content-encoding", e.parse().unwrap());
    }
    resp
}

async fn start_upstream(ca: &TestCa, names: &[String], responses: Responses) -> u16 {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&names));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let responses = responses.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let svc = service_fn(move |req| {
                        let r = responses.clone();
                        async move { Ok::<_, Infallible>(upstream_handler(r, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    port
}

// ------------------------------------------------------------------ runner

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Blocked,
    Passed,
    /// Neither a clean pass nor a block (a 502, a broken tunnel).
    Error,
}

async fn send(proxy: SocketAddr, port: u16, ca: &TestCa, r: &Ready) -> (Outcome, String) {
    let tls = connect_tls(proxy, &r.host, port, &r.host, ca).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let path = if r.response.is_some() {
        format!("/r/{}", r.case.id)
    } else {
        r.path.clone()
    };
    let mut b = Request::builder()
        .method(r.case.method.as_str())
        .uri(&path)
        .header("host", format!("{}:{port}", r.host));
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some(e) = &r.case.encoding {
        let label = if e == "gzip-corrupt" { "gzip" } else { e };
        b = b.header("content-encoding", label);
    }
    let req = b.body(Full::new(Bytes::from(r.body.clone()))).unwrap();
    let resp = match tokio::time::timeout(DEADLINE, send.send_request(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return (Outcome::Error, format!("request failed: {e}")),
        Err(_) => return (Outcome::Error, "timed out".into()),
    };
    let status = resp.status().as_u16();
    let decision = resp
        .headers()
        .get("x-egress-decision")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .map(|r| r.map(http_body_util::Collected::to_bytes));
    let text = match &body {
        Ok(Ok(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let first = text.lines().take(2).collect::<Vec<_>>().join(" | ");
    if status == 403 && decision.as_deref() == Some("deny") {
        return (Outcome::Blocked, first);
    }
    match body {
        Ok(Ok(_)) if status == 200 => (Outcome::Passed, String::new()),
        // A streamed response cut by the proxy.
        Ok(Err(e)) if r.response.is_some() && status == 200 => (Outcome::Blocked, e.to_string()),
        _ => (Outcome::Error, format!("status {status} {first}")),
    }
}

struct Spawned {
    child: tokio::process::Child,
    addr: SocketAddr,
}

async fn spawn(w: &World, routes: &Path, resolve: &str) -> Spawned {
    let mut child = tokio::process::Command::new(BIN)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--routes")
        .arg(routes)
        .arg("--ca-cert")
        .arg(&w.proxy_ca.cert_path)
        .arg("--ca-key")
        .arg(&w.proxy_ca.key_path)
        .arg("--upstream-ca")
        .arg(&w.upstream_ca.cert_path)
        .arg("--log-format")
        .arg("json")
        .env("EGRESS_DLP_ACTION", "block")
        .env("EGRESS_INJECTION_ACTION", "block")
        .env(
            "EGRESS_DLP_DETECTORS",
            "payment-card=block,iban=block,crypto-private-key=block,bip39-mnemonic=block",
        )
        .env("EGRESS_RESOLVE", resolve)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env("RUST_LOG", "warn,egress_proxy=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("egress-proxy listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                return v["listen"].as_str().unwrap().parse::<SocketAddr>().unwrap();
            }
        }
        panic!("the proxy exited before listening");
    })
    .await
    .expect("proxy did not report its address");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Spawned { child, addr }
}

#[derive(Default)]
struct Row {
    malicious: usize,
    caught: usize,
    benign: usize,
    false_blocks: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_targets_are_met_through_the_real_binary() {
    let mut cases = load("cases.toml");
    let realistic = load("realistic.toml");
    let n_cases = cases.len();
    cases.extend(realistic);

    let w = World::new().await;
    let mut names: BTreeSet<String> = cases.iter().map(|c| c.host.clone()).collect();
    names.insert("*.wild.corpus.test".into());
    let names: Vec<String> = names.into_iter().collect();
    let responses: Responses = Arc::new(
        cases
            .iter()
            .filter_map(|c| c.response.clone().map(|r| (c.case.id.clone(), r)))
            .collect(),
    );
    let port = start_upstream(&w.upstream_ca, &names, responses).await;
    let exact: BTreeSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.ends_with(".wild.corpus.test") && !n.starts_with('*'))
        .collect();
    // The local upstream is on loopback at a free port: the operator's
    // opt-ins for both, on every route.
    let opt_in = format!("    ports: [{port}]\n    allow_private: true\n");
    let mut routes = format!("version: 1\nroutes:\n  - host: \"*.wild.corpus.test\"\n{opt_in}");
    for h in &exact {
        routes.push_str(&format!("  - host: {h}\n{opt_in}"));
    }
    let routes_path = w.path("corpus-routes.yaml");
    std::fs::write(&routes_path, routes).unwrap();
    let resolve = names
        .iter()
        .filter(|n| !n.starts_with('*'))
        .map(|n| format!("{n}=127.0.0.1"))
        .collect::<Vec<_>>()
        .join(",");
    let mut proxy = spawn(&w, &routes_path, &resolve).await;

    let mut table: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for r in &cases {
        let (outcome, detail) = send(proxy.addr, port, &w.proxy_ca, r).await;
        let group = if r.file == "realistic.toml" {
            "realistic sample"
        } else if r.case.expect == Expect::Block {
            "malicious"
        } else {
            "benign control"
        };
        let row = table
            .entry((group.to_owned(), r.case.technique.clone()))
            .or_default();
        match (r.case.expect, outcome) {
            (_, Outcome::Error) => errors.push(format!("{}: {detail}", r.case.id)),
            (Expect::Block, o) => {
                row.malicious += 1;
                if o == Outcome::Blocked {
                    row.caught += 1;
                } else {
                    problems.push(format!("missed {} ({})", r.case.id, r.case.technique));
                }
            }
            (Expect::Pass, o) => {
                row.benign += 1;
                if o == Outcome::Blocked {
                    row.false_blocks += 1;
                    problems.push(format!("false block {}: {detail}", r.case.id));
                }
            }
        }
    }
    let _ = proxy.child.start_kill();

    let mut out = String::new();
    out.push_str(&format!(
        "\ninspection corpus: {n_cases} cases + {} realistic, through {BIN}\n\n",
        cases.len() - n_cases
    ));
    out.push_str("| group | technique | cases | caught | missed | false blocks |\n|---|---|---|---|---|---|\n");
    let mut tot: BTreeMap<&str, Row> = BTreeMap::new();
    for ((group, tech), row) in &table {
        let t = tot.entry(group.as_str()).or_default();
        t.malicious += row.malicious;
        t.caught += row.caught;
        t.benign += row.benign;
        t.false_blocks += row.false_blocks;
        let cases = row.malicious + row.benign;
        let (caught, missed) = if row.malicious > 0 {
            (
                row.caught.to_string(),
                (row.malicious - row.caught).to_string(),
            )
        } else {
            ("–".into(), "–".into())
        };
        let fb = if row.benign > 0 {
            row.false_blocks.to_string()
        } else {
            "–".into()
        };
        out.push_str(&format!(
            "| {group} | {tech} | {cases} | {caught} | {missed} | {fb} |\n"
        ));
    }
    for (group, t) in &tot {
        out.push_str(&format!(
            "| **{group}** | all | {} | {} | {} | {} |\n",
            t.malicious + t.benign,
            t.caught,
            t.malicious - t.caught,
            t.false_blocks
        ));
    }
    for p in &problems {
        out.push_str(&format!("- {p}\n"));
    }
    eprintln!("{out}");
    if let Ok(dir) = std::env::var("CORPUS_TABLE_OUT") {
        std::fs::write(dir, &out).unwrap();
    }

    assert!(
        errors.is_empty(),
        "cases that neither passed nor were blocked:\n{}",
        errors.join("\n")
    );
    let mal = &tot["malicious"];
    let ben = &tot["benign control"];
    let real = &tot["realistic sample"];
    assert!(
        n_cases >= 200,
        "the corpus needs at least 200 cases, has {n_cases}"
    );
    assert!(
        ben.benign * 3 >= n_cases,
        "at least a third of the cases must be benign controls: {} of {n_cases}",
        ben.benign
    );
    assert!(
        mal.caught * 100 >= mal.malicious * 95,
        "caught {} of {} malicious cases (< 95%){out}",
        mal.caught,
        mal.malicious
    );
    assert!(
        ben.false_blocks * 100 <= ben.benign,
        "{} false blocks on {} benign controls (> 1%){out}",
        ben.false_blocks,
        ben.benign
    );
    assert_eq!(
        real.false_blocks, 0,
        "false blocks on the realistic sample{out}"
    );
}

/// The BIP-39 English list, as secret-scan embeds it.
fn bip39_words() -> Vec<&'static str> {
    include_str!("../../../secret-scan/src/bip39_english.txt")
        .lines()
        .collect()
}

/// The 12/24-word BIP-39 mnemonic of 16/32 bytes of entropy.
fn mnemonic(entropy: &[u8]) -> String {
    let hash = Sha256::digest(entropy);
    let ent = entropy.len() * 8;
    let bit = |i: usize| -> u16 {
        let byte = if i < ent {
            entropy[i / 8]
        } else {
            hash[(i - ent) / 8]
        };
        u16::from(byte >> (7 - i % 8) & 1)
    };
    let words = bip39_words();
    (0..(ent + ent / 32) / 11)
        .map(|w| words[usize::from((0..11).fold(0u16, |a, b| a << 1 | bit(w * 11 + b)))])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 16 bytes of entropy twelve word indices carry (checksum bits
/// dropped).
fn mnemonic_entropy(idx: &[u16]) -> Option<Vec<u8>> {
    (idx.len() == 12).then(|| {
        let mut out = vec![0u8; 16];
        for i in 0..128 {
            let w = idx[i / 11];
            if w >> (10 - i % 11) & 1 == 1 {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out
    })
}
