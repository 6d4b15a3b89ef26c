//! Scanner throughput, one core. Prints MB/s; asserts nothing.
//!
//! `cargo bench -p secret-scan` (or `cargo run --release -p secret-scan
//! --bench scan`). Inputs: the cargo registry sources on this machine
//! (`~/.cargo/registry/src`, capped at 64 MiB, scanned file by file as
//! git-gate scans blobs), generated text with no keyword hits, generated
//! near-miss-dense text, and the same inputs under a ~150-rule gitleaks-style
//! TOML generated here (the default rules plus vendor token rules).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use secret_scan::RuleSet;

fn registry_files(cap: usize) -> Vec<(String, Vec<u8>)> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let root = PathBuf::from(home).join(".cargo/registry/src");
    let mut out = Vec::new();
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if is_source(&path)
                && let Ok(b) = std::fs::read(&path)
            {
                total += b.len();
                out.push((path.display().to_string(), b));
                if total >= cap {
                    return out;
                }
            }
        }
    }
    out
}

fn is_source(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("rs" | "toml" | "md" | "c" | "h" | "py" | "json" | "yml" | "yaml" | "txt" | "sh")
    )
}

fn no_hit_text(len: usize) -> Vec<u8> {
    let words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "enim",
        "minim",
        "veniam",
        "quis",
        "nostrud",
    ];
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        out.push(if i % 12 == 11 { b'\n' } else { b' ' });
        i += 1;
    }
    out
}

fn near_miss_text(len: usize) -> Vec<u8> {
    let lines = [
        "    let password = get_password_from_vault(&cfg)?;\n",
        "    token: ${GITHUB_TOKEN}\n",
        "    api_key = \"your_api_key_here\"\n",
        "    // see https://docs.example.org/auth for the secret_name format\n",
        "    let ghp_prefix = \"ghp_\"; let akia = \"AKIA\";\n",
        "    url = \"postgres://app:password@localhost/db\"\n",
        "    -----BEGIN PUBLIC KEY-----\n",
        "    const AIza_LEN: usize = 39; // eyJ marks base64 json\n",
        "    self.access_key = access_key.to_owned();\n",
    ];
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(lines[i % lines.len()].as_bytes());
        i += 1;
    }
    out
}

/// ~150 rules: the defaults plus two rules per vendor (prefixed token, and a
/// vendor-named assignment), the shapes most of gitleaks' rules have.
fn big_rules_toml() -> String {
    let vendors = [
        "adafruit",
        "adobe",
        "age",
        "airtable",
        "algolia",
        "alibaba",
        "asana",
        "atlassian",
        "authress",
        "beamer",
        "bitbucket",
        "bittrex",
        "clojars",
        "cloudflare",
        "codecov",
        "coinbase",
        "confluent",
        "contentful",
        "databricks",
        "datadog",
        "defined",
        "digitalocean",
        "discord",
        "doppler",
        "dropbox",
        "droneci",
        "duffel",
        "dynatrace",
        "easypost",
        "etsy",
        "facebook",
        "fastly",
        "finicity",
        "finnhub",
        "flickr",
        "flutterwave",
        "frameio",
        "freshbooks",
        "gitter",
        "gocardless",
        "grafana",
        "harness",
        "hashicorp",
        "heroku",
        "hubspot",
        "huggingface",
        "intercom",
        "intra42",
        "jfrog",
        "kraken",
        "kucoin",
        "launchdarkly",
        "linear",
        "linkedin",
        "lob",
        "mailchimp",
        "mailgun",
        "mapbox",
        "mattermost",
        "messagebird",
        "netlify",
        "newrelic",
        "nytimes",
        "okta",
        "openshift",
        "plaid",
        "planetscale",
        "postman",
        "prefect",
        "pulumi",
        "readme",
        "rubygems",
        "scalingo",
        "sendbird",
        "sendgrid",
        "sentry",
        "shippo",
        "shopify",
        "sidekiq",
        "snyk",
        "squarespace",
        "sumologic",
        "telegram",
        "travisci",
        "twilio",
        "twitch",
        "typeform",
        "vault",
        "yandex",
        "zendesk",
    ];
    let mut t =
        String::from("title = \"bench: large gitleaks-style set\"\n[extend]\nuseDefault = true\n");
    for (i, v) in vendors.iter().enumerate() {
        if i % 3 != 2 {
            let prefix: String = v.chars().take(4).collect();
            t.push_str(&format!(
                "\n[[rules]]\nid = \"{v}-token\"\ndescription = \"{v} token\"\nregex = '''\\b{prefix}_{i}_[0-9A-Za-z]{{32,64}}\\b'''\nkeywords = [\"{prefix}_{i}_\"]\nentropy = 3.0\n"
            ));
        }
        t.push_str(&format!(
            "\n[[rules]]\nid = \"{v}-api-key\"\ndescription = \"{v} API key assignment\"\nregex = '''(?i)[\\w.-]{{0,50}}?{v}[\\w.-]{{0,20}}?(?:key|token|secret)[\\w.-]{{0,10}}['\"]?\\s{{0,4}}(?:=|:|:=|=>)\\s{{0,4}}['\"]?([0-9A-Za-z_-]{{32,64}})(?:['\"\\s;,]|$)'''\nkeywords = [\"{v}\"]\nentropy = 3.5\n"
        ));
    }
    t
}

fn bench(name: &str, set: &RuleSet, files: &[(String, Vec<u8>)]) {
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut findings = 0;
    // Warm once, then time the best of three.
    for (p, b) in files {
        findings += set.scan(b, Some(p)).len();
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for (p, b) in files {
            std::hint::black_box(set.scan(b, Some(p)));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name:<48} {:>8.1} MB  {:>8.0} MB/s  ({} files, {findings} findings)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / best,
        files.len()
    );
}

fn chunks(data: Vec<u8>, size: usize) -> Vec<(String, Vec<u8>)> {
    data.chunks(size)
        .enumerate()
        .map(|(i, c)| (format!("gen/{i}.txt"), c.to_vec()))
        .collect()
}

fn main() {
    let defaults = RuleSet::default_rules();
    let t = Instant::now();
    let big = RuleSet::from_toml(&big_rules_toml(), "bench-large.toml").unwrap();
    println!(
        "large rule set: {} rules, built in {:.1} ms",
        big.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("default rule set: {} rules", defaults.len());
    let src = registry_files(64 << 20);
    let clean = chunks(no_hit_text(64 << 20), 1 << 20);
    let near = chunks(near_miss_text(16 << 20), 1 << 20);
    let mut by_rule = std::collections::BTreeMap::new();
    for (p, b) in &src {
        for f in defaults.scan(b, Some(p)) {
            *by_rule.entry(f.rule_id).or_insert(0) += 1;
        }
    }
    println!("default-rule findings in the registry sources, by rule: {by_rule:?}");
    if std::env::var_os("SHOW_FINDINGS").is_some() {
        for (p, b) in &src {
            for f in defaults.scan(b, Some(p)) {
                println!("  {f}");
            }
        }
    }
    for (label, set) in [("default", &defaults), ("large", &big)] {
        if !src.is_empty() {
            bench(&format!("{label}: cargo registry sources"), set, &src);
        }
        bench(&format!("{label}: text with no keyword hits"), set, &clean);
        bench(&format!("{label}: near-miss-dense text"), set, &near);
    }
}
