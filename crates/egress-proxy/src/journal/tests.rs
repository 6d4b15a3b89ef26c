use super::*;
use std::sync::mpsc;

/// A writer that collects everything, optionally blocking until released.
#[derive(Clone)]
struct Sink {
    out: Arc<Mutex<Vec<u8>>>,
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(rx) = self.gate.lock().unwrap().take() {
            // Blocked like a pipe nobody reads, until the test releases it.
            let _ = rx.recv();
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn sink(blocked: bool) -> (Sink, Option<mpsc::Sender<()>>) {
    let (tx, rx) = mpsc::channel();
    let s = Sink {
        out: Default::default(),
        gate: Arc::new(Mutex::new(blocked.then_some(rx))),
    };
    (s, blocked.then_some(tx))
}

fn decision(i: usize) -> Vec<u8> {
    let path = format!("/p/{i}/\"quoted\"\\\n\u{1}");
    let mut b = Vec::new();
    write_decision(
        &mut b,
        &Decision {
            client: "127.0.0.1:4000".parse().unwrap(),
            method: "GET",
            host: "api.test",
            path: &path,
            route: "api.test",
            decision: "allow",
            reason: "",
            status: 200,
            bytes_in: 1,
            bytes_out: 2,
            duration_ms: 0.25,
        },
    );
    b
}

#[test]
fn decision_lines_are_one_json_object_each() {
    let line = decision(7);
    assert_eq!(line.iter().filter(|&&c| c == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["path"], "/p/7/\"quoted\"\\\n\u{1}");
    assert_eq!(v["target"], "egress_proxy::decision");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "request");
    assert_eq!(v["status"], 200);
    assert_eq!(v["duration_ms"], 0.25);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn shutdown_writes_everything_buffered() {
    let (s, _) = sink(false);
    let j = Journal::start(1 << 20, Box::new(s.clone())).unwrap();
    for i in 0..2000 {
        assert!(j.append(&decision(i)));
    }
    j.shutdown();
    let out = s.out.lock().unwrap().clone();
    assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), 2000);
    assert!(!j.append(b"late\n"), "after shutdown nothing is accepted");
}

#[test]
fn a_full_buffer_drops_counts_and_reports_never_blocks() {
    let (s, release) = sink(true);
    let j = Journal::start(16 * 1024, Box::new(s.clone())).unwrap();
    // The first batch blocks the writer; the buffer then fills up.
    let started = std::time::Instant::now();
    let total = 3000;
    let mut accepted = 0;
    for i in 0..total {
        if j.append(&decision(i)) {
            accepted += 1;
        }
        if i == 0 {
            // Let the writer take the first line and block on it.
            std::thread::sleep(FLUSH_INTERVAL * 3);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "appends waited for the writer"
    );
    assert!(accepted < total, "nothing was dropped");
    assert_eq!(j.dropped(), (total - accepted) as u64);
    release.unwrap().send(()).unwrap();
    j.shutdown();
    let out = String::from_utf8(s.out.lock().unwrap().clone()).unwrap();
    let mut lines = 0;
    let mut reported = 0;
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["target"] == "egress_proxy::journal" {
            reported += v["dropped"].as_u64().unwrap();
        } else {
            lines += 1;
        }
    }
    assert_eq!(lines, accepted);
    assert_eq!(reported as usize, total - accepted);
}
