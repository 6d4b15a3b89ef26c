//! Rule, scanner and loader tests. Every secret-shaped value is assembled at
//! run time from fragments so this file itself holds nothing scannable (our
//! own git-gate must accept the repository).

use std::collections::BTreeSet;

use crate::{RuleError, RuleSet, shannon_entropy};

fn defaults() -> RuleSet {
    RuleSet::default_rules()
}

/// Deterministic pseudo-random text over `alphabet`.
fn rnd(seed: u64, alphabet: &str, len: usize) -> String {
    let a = alphabet.as_bytes();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            a[(x % a.len() as u64) as usize] as char
        })
        .collect()
}

/// `len` distinct characters of `alphabet` (a seeded shuffle). A planted
/// key built from these always clears the rules' entropy floors: `rnd` can
/// repeat characters, and about 1 seed in 5000 gives an AWS-shaped key
/// below the 3.0 bits the rule asks for, which a property test would hit.
fn rnd_distinct(seed: u64, alphabet: &str, len: usize) -> String {
    let mut a = alphabet.as_bytes().to_vec();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    for i in (1..a.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        a.swap(i, (x % (i as u64 + 1)) as usize);
    }
    a.truncate(len);
    String::from_utf8(a).expect("ASCII alphabet")
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const UPPER32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &str = "0123456789abcdef";

fn ids(set: &RuleSet, text: &str) -> BTreeSet<String> {
    set.scan(text.as_bytes(), Some("src/config.py"))
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

/// `(rule id, true positives, near misses)`.
fn cases() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    let pem_body = (0..4)
        .map(|i| rnd(i, B64, 64))
        .collect::<Vec<_>>()
        .join("\n");
    let begin = ["-----", "BEGIN"].concat();
    let end = ["-----", "END"].concat();
    vec![
        (
            "private-key",
            vec![
                format!("{begin} RSA PRIVATE KEY-----\n{pem_body}\n{end} RSA PRIVATE KEY-----\n"),
                format!(
                    "key = \"{begin} OPENSSH PRIVATE KEY-----\\n{pem_body}\\n{end} OPENSSH PRIVATE KEY-----\""
                ),
            ],
            vec![
                format!("{begin} PUBLIC KEY-----\n{pem_body}\n{end} PUBLIC KEY-----\n"),
                format!("{begin} PRIVATE KEY-----\n...\n{end} PRIVATE KEY-----\n"),
            ],
        ),
        (
            "aws-access-key-id",
            vec![
                format!("id = {}{}", "AKIA", rnd(1, UPPER32, 16)),
                format!("\"{}{}\"", "ASIA", rnd(2, UPPER32, 16)),
            ],
            vec![
                ["AKIA", "IOSFODNN7", "EXAMPLE"].concat(),
                format!("{}{}", "AKIA", rnd(1, UPPER32, 16).to_lowercase()),
                format!("X{}{}", "AKIA", rnd(3, UPPER32, 16)),
            ],
        ),
        (
            "aws-secret-access-key",
            vec![
                format!("aws_secret_access_key = \"{}\"", rnd(4, B64, 40)),
                format!("AWS_SECRET_ACCESS_KEY: {}", rnd(5, B64, 40)),
            ],
            vec![
                "aws_secret_access_key = os.environ[\"AWS_SECRET_ACCESS_KEY\"]".into(),
                format!("aws_secret_access_key = \"{}\"", "abab".repeat(10)),
            ],
        ),
        (
            "github-pat",
            vec![format!("GITHUB_TOKEN={}_{}", "ghp", rnd(6, ALNUM, 36))],
            vec![
                format!("{}_{}", "ghp", rnd(6, ALNUM, 20)),
                format!("{}_{}", "ghp", "a".repeat(36)),
            ],
        ),
        (
            "github-fine-grained-pat",
            vec![format!(
                "{}_{}_{}",
                "github_pat",
                rnd(7, ALNUM, 22),
                rnd(8, ALNUM, 59)
            )],
            vec![format!(
                "{}_{}_{}",
                "github_pat",
                rnd(7, ALNUM, 10),
                rnd(8, ALNUM, 20)
            )],
        ),
        (
            "github-app-token",
            vec![
                format!("{}_{}", "ghs", rnd(9, ALNUM, 36)),
                format!("{}_{}", "ghu", rnd(10, ALNUM, 36)),
            ],
            vec![
                format!("{}_{}", "ghx", rnd(9, ALNUM, 36)),
                format!("{}_{}", "ghs", rnd(9, ALNUM, 12)),
            ],
        ),
        (
            "github-oauth",
            vec![format!("{}_{}", "gho", rnd(11, ALNUM, 36))],
            vec![format!("{}_{}", "gho", rnd(11, ALNUM, 30))],
        ),
        (
            "github-refresh-token",
            vec![format!("{}_{}", "ghr", rnd(12, ALNUM, 76))],
            vec![format!("{}_{}", "ghr", rnd(12, ALNUM, 20))],
        ),
        (
            "gitlab-token",
            vec![
                format!("{}-{}", "glpat", rnd(13, ALNUM, 20)),
                format!("{}-{}", "gldt", rnd(14, ALNUM, 24)),
            ],
            vec![
                format!("{}-{}", "glpat", rnd(13, ALNUM, 8)),
                format!("{}-{}", "glxyz", rnd(13, ALNUM, 20)),
            ],
        ),
        (
            "slack-token",
            vec![format!(
                "{}-{}-{}",
                "xoxb",
                "1234567890",
                rnd(15, ALNUM, 24)
            )],
            vec![
                format!("{}-{}", "xoxb", "abc"),
                format!("{}-{}", "xoxz", rnd(15, ALNUM, 24)),
            ],
        ),
        (
            "slack-webhook",
            vec![format!(
                "https://{}/services/T{}/B{}/{}",
                "hooks.slack.com",
                rnd(16, UPPER32, 8),
                rnd(17, UPPER32, 8),
                rnd(18, ALNUM, 24)
            )],
            vec![format!(
                "https://{}/services/T000/B000/XXX",
                "hooks.slack.com"
            )],
        ),
        (
            "stripe-secret-key",
            vec![
                format!("{}_{}_{}", "sk", "live", rnd(19, ALNUM, 24)),
                format!("{}_{}_{}", "rk", "test", rnd(20, ALNUM, 30)),
            ],
            vec![
                format!("{}_{}_{}", "pk", "live", rnd(19, ALNUM, 24)),
                format!("{}_{}_{}", "sk", "live", rnd(19, ALNUM, 10)),
            ],
        ),
        (
            "anthropic-api-key",
            vec![
                format!("{}-{}-{}AA", "sk-ant", "api03", rnd(21, B64URL, 93)),
                format!("{}-{}-{}", "sk-ant", "oat01", rnd(22, B64URL, 95)),
            ],
            vec![
                format!("{}-{}-{}", "sk-ant", "api03", rnd(21, B64URL, 20)),
                format!("{}-{}-{}", "sk-ant", "xyz", rnd(21, B64URL, 93)),
            ],
        ),
        (
            "openai-api-key",
            vec![
                format!(
                    "{}-{}{}{}",
                    "sk-proj",
                    rnd(23, ALNUM, 40),
                    ["T3Blbk", "FJ"].concat(),
                    rnd(24, ALNUM, 40)
                ),
                format!(
                    "{}-{}{}{}",
                    "sk",
                    rnd(25, ALNUM, 20),
                    ["T3Blbk", "FJ"].concat(),
                    rnd(26, ALNUM, 20)
                ),
            ],
            vec![
                format!("{}-{}", "sk-proj", rnd(23, ALNUM, 40)),
                format!(
                    "{}-{}{}",
                    "sk",
                    rnd(25, ALNUM, 20),
                    ["T3Blbk", "FJ"].concat()
                ),
            ],
        ),
        (
            "google-api-key",
            vec![format!("{}{}", "AIza", rnd(27, B64URL, 35))],
            vec![
                format!("{}{}", "AIza", rnd(27, B64URL, 20)),
                format!("{}{}", "Aiza", rnd(27, B64URL, 35)),
            ],
        ),
        (
            "gcp-service-account",
            vec![format!(
                "{{\"type\": \"service_account\", \"{}\": \"{}\"}}",
                "private_key_id",
                rnd(28, HEX, 40)
            )],
            vec![
                format!("\"{}\": \"<your key id>\"", "private_key_id"),
                format!("\"{}\": \"{}\"", "private_key_id", "0".repeat(40)),
            ],
        ),
        (
            "npm-token",
            vec![format!(
                "//registry.npmjs.org/:_authToken={}_{}",
                "npm",
                rnd(29, ALNUM, 36)
            )],
            vec![
                "npm_config_registry=https://registry.npmjs.org/".into(),
                format!("{}_{}", "npm", rnd(29, ALNUM, 20)),
            ],
        ),
        (
            "pypi-token",
            vec![format!(
                "{}-{}{}",
                "pypi",
                "AgEIcHlwaS5vcmc",
                rnd(30, B64URL, 70)
            )],
            vec![format!(
                "{}-{}{}",
                "pypi",
                "AgEIcHlwaS5vcmc",
                rnd(30, B64URL, 10)
            )],
        ),
        (
            "jwt",
            vec![format!(
                "Authorization: Bearer {}{}.{}{}.{}",
                "eyJ",
                "hbGciOiJIUzI1NiJ9",
                "eyJ",
                "zdWIiOiIxMjM0NTY3ODkwIn0",
                rnd(31, B64URL, 43)
            )],
            vec![
                format!("{}{}", "eyJ", "hbGciOiJIUzI1NiJ9"),
                format!(
                    "{}{}.{}{}",
                    "eyJ", "hbGciOiJIUzI1NiJ9", "eyJ", "zdWIiOiIxMjM0NTY3ODkwIn0"
                ),
            ],
        ),
        (
            "generic-credential",
            vec![
                format!("db_password = \"{}\"", rnd(32, ALNUM, 24)),
                format!("  clientSecret: '{}',", rnd(33, ALNUM, 32)),
                format!("export API_TOKEN={}", rnd(34, ALNUM, 40)),
            ],
            vec![
                "password = \"changeme\"".into(),
                "password = get_password_from_vault()".into(),
                "token: ${GITHUB_TOKEN}".into(),
                "api_key = \"your_api_key_here\"".into(),
                "secret_name = \"my-secret-name\"".into(),
                "    pub CredentialKeyType: MSV1_0_CREDENTIAL_KEY_TYPE,".into(),
                "    pub credentials: MI_UserCredentials_0,".into(),
                "let token = self.session.refresh_token;".into(),
                "password_hash = hashPasswordWithSalt".into(),
                "token = \"xxxxxxxxxxxxxxxxxxxxxxxx\"".into(),
                "      secretName:\n        my-db-secret-v2-prod\n".into(),
            ],
        ),
        (
            "url-credentials",
            vec![format!(
                "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
                rnd(35, ALNUM, 16)
            )],
            vec![
                "postgres://app:password@localhost/db".into(),
                "https://user@example.org/repo.git".into(),
                "http://u:${PASS}@host/".into(),
                "see https://docs.rs/regex for details".into(),
            ],
        ),
    ]
    .into_iter()
    .chain(vendor_cases())
    .collect()
}

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPERNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWERNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const BECH32: &str = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

/// The prefixed vendor tokens: `(id, [prefix, body…] pieces of a true
/// positive, near misses)`. Prefixes are split so no literal here is
/// token-shaped.
fn vendor_cases() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    let c = |p: &[&str]| p.concat();
    let one = |id, pos: String, miss: String| (id, vec![pos], vec![miss]);
    vec![
        one(
            "slack-app-token",
            c(&[
                "xapp",
                "-1-A",
                &rnd(40, UPPERNUM, 10),
                "-1234567890123-",
                &rnd(41, HEX, 64),
            ]),
            c(&["xapp", "-1-short"]),
        ),
        one(
            "stripe-webhook-secret",
            c(&["whsec", "_", &rnd(42, ALNUM, 32)]),
            c(&["whsec", "_", "abc"]),
        ),
        one(
            "openai-project-key",
            c(&["sk-", "proj-", &rnd(43, B64URL, 120)]),
            c(&["sk-", "proj-", &rnd(43, ALNUM, 30)]),
        ),
        one(
            "openrouter-api-key",
            c(&["sk-or", "-v1-", &rnd(44, HEX, 64)]),
            c(&["sk-or", "-v1-", &rnd(44, HEX, 20)]),
        ),
        one(
            "huggingface-token",
            c(&["hf", "_", &rnd(45, LETTERS, 34)]),
            c(&["hf", "_", &rnd(45, LETTERS, 12)]),
        ),
        one(
            "groq-api-key",
            c(&["gsk", "_", &rnd(46, ALNUM, 52)]),
            c(&["gsk", "_", &rnd(46, ALNUM, 20)]),
        ),
        one(
            "xai-api-key",
            c(&["xai", "-", &rnd(47, ALNUM, 80)]),
            c(&["xai", "-", "grok"]),
        ),
        one(
            "perplexity-api-key",
            c(&["pplx", "-", &rnd(48, ALNUM, 48)]),
            c(&["pplx", "-", &rnd(48, ALNUM, 10)]),
        ),
        one(
            "replicate-api-token",
            c(&["r8", "_", &rnd(49, ALNUM, 37)]),
            c(&["r8", "_", &rnd(49, ALNUM, 10)]),
        ),
        one(
            "langsmith-api-key",
            c(&["lsv2", "_pt_", &rnd(50, HEX, 32), "_", &rnd(51, HEX, 10)]),
            c(&["lsv2", "_pt_", "abc"]),
        ),
        one(
            "gcp-oauth-client-secret",
            c(&["GOCSPX", "-", &rnd(52, ALNUM, 28)]),
            c(&["GOCSPX", "-", "short"]),
        ),
        one(
            "gcp-oauth-access-token",
            c(&["ya29", ".", &rnd(53, B64URL, 60)]),
            c(&["ya29", ".", "abc"]),
        ),
        one(
            "azure-storage-key",
            c(&[
                "DefaultEndpointsProtocol=https;AccountName=x;Account",
                "Key=",
                &rnd(54, B64, 86),
                "==;",
            ]),
            c(&["Account", "Key=", "abc=="]),
        ),
        one(
            "azure-ad-client-secret",
            c(&[
                "value = '",
                &rnd(55, ALNUM, 3),
                "8Q",
                "~",
                &rnd(56, ALNUM, 34),
                "'",
            ]),
            c(&["a~b 8Q", "~x"]),
        ),
        one(
            "digitalocean-token",
            c(&["dop", "_v1_", &rnd(57, HEX, 64)]),
            c(&["dop", "_v1_", &rnd(57, HEX, 20)]),
        ),
        one(
            "sendgrid-api-key",
            c(&["SG", ".", &rnd(58, ALNUM, 22), ".", &rnd(59, ALNUM, 43)]),
            c(&["msg", ".", "content"]),
        ),
        one(
            "mailgun-api-key",
            c(&["key", "-", &rnd(60, HEX, 32)]),
            c(&["api", "-", "key", "-", "name"]),
        ),
        one(
            "shopify-token",
            c(&["shpat", "_", &rnd(62, HEX, 32)]),
            c(&["shpat", "_", "abc"]),
        ),
        one(
            "atlassian-api-token",
            c(&["ATATT", "3", &rnd(63, ALNUM, 186)]),
            c(&["ATATT", "3", "xyz"]),
        ),
        one(
            "bitbucket-app-password",
            c(&["ATBB", &rnd(64, ALNUM, 32)]),
            c(&["ATBB", "short"]),
        ),
        one(
            "linear-api-key",
            c(&["lin", "_api_", &rnd(65, ALNUM, 40)]),
            c(&["lin", "_api_", "x"]),
        ),
        one(
            "notion-token",
            c(&["ntn", "_", &rnd(66, ALNUM, 46)]),
            c(&["secret", "_", "name"]),
        ),
        one(
            "postman-api-key",
            c(&["PMAK", "-", &rnd(67, HEX, 24), "-", &rnd(68, HEX, 34)]),
            c(&["PMAK", "-", "abc"]),
        ),
        one(
            "databricks-token",
            c(&["dapi", &rnd(69, HEX, 32)]),
            c(&["dapi", "version"]),
        ),
        one(
            "doppler-token",
            c(&["dp", ".pt.", &rnd(70, ALNUM, 43)]),
            c(&["dp", ".pt.", "x"]),
        ),
        one(
            "vault-token",
            c(&["hvs", ".", &rnd(71, ALNUM, 90)]),
            c(&["hvs", ".", "short"]),
        ),
        one(
            "terraform-cloud-token",
            c(&[&rnd(72, ALNUM, 14), ".atlas", "v1.", &rnd(73, ALNUM, 67)]),
            c(&["x.atlas", "v1.", "y"]),
        ),
        one(
            "pulumi-access-token",
            c(&["pul", "-", &rnd(74, HEX, 40)]),
            c(&["pul", "-", "request"]),
        ),
        one(
            "grafana-token",
            c(&["glsa", "_", &rnd(75, ALNUM, 32), "_", &rnd(76, HEX, 8)]),
            c(&["glsa", "_", "x"]),
        ),
        one(
            "newrelic-api-key",
            c(&["NRAK", "-", &rnd(77, UPPERNUM, 27)]),
            c(&["NRAK", "-", "X"]),
        ),
        one(
            "sentry-token",
            c(&["sntrys", "_", &rnd(78, B64, 120)]),
            c(&["sntrys", "_", "x"]),
        ),
        one(
            "rubygems-api-key",
            c(&["rubygems", "_", &rnd(79, HEX, 48)]),
            c(&["rubygems", "_", "org"]),
        ),
        one(
            "nuget-api-key",
            c(&["oy2", &rnd(80, LOWERNUM, 43)]),
            c(&["oy2", "abc"]),
        ),
        one(
            "dockerhub-token",
            c(&["dckr", "_pat_", &rnd(81, B64URL, 27)]),
            c(&["dckr", "_pat_", "x"]),
        ),
        one(
            "flyio-token",
            c(&["fm2", "_", &rnd(82, B64, 120)]),
            c(&["fm2", "_", "x"]),
        ),
        one(
            "supabase-token",
            c(&["sbp", "_", &rnd(83, HEX, 40)]),
            c(&["sbp", "_", "x"]),
        ),
        one(
            "vercel-token",
            c(&["vcp", "_", &rnd(84, ALNUM, 50)]),
            c(&["vcp", "_", "x"]),
        ),
        one(
            "netlify-token",
            c(&["nfp", "_", &rnd(85, ALNUM, 36)]),
            c(&["nfp", "_", "x"]),
        ),
        one(
            "heroku-api-key",
            c(&["HRKU", "-", &rnd(86, B64URL, 40)]),
            c(&["HRKU", "-", "x"]),
        ),
        one(
            "telegram-bot-token",
            c(&["bot", "1234567890", ":AA", &rnd(87, B64URL, 33), " "]),
            c(&["12:", "AA", "x"]),
        ),
        one(
            "discord-webhook",
            c(&[
                "https://discord",
                ".com/api/webhooks/",
                "123456789012345678",
                "/",
                &rnd(88, B64URL, 68),
            ]),
            c(&["https://discord", ".com/api/webhooks/", "1/x"]),
        ),
        one(
            "square-token",
            c(&["sq0atp", "-", &rnd(89, B64URL, 22)]),
            c(&["sq0atp", "-", "x"]),
        ),
        one(
            "age-secret-key",
            c(&["AGE-SECRET", "-KEY-1", &rnd(90, BECH32, 58)]),
            c(&["AGE-SECRET", "-KEY-1", "QQ"]),
        ),
        one(
            "putty-private-key",
            c(&[
                "PuTTY-User",
                "-Key-File-3: ssh-ed25519\nEncryption: none\nComment: me\nPublic-Lines: 2\n",
            ])
            .replace("\\n", "\n"),
            c(&[
                "PuTTY-User",
                "-Key-File-3: ssh-ed25519 (mentioned in prose)",
            ]),
        ),
        one(
            "jfrog-api-key",
            c(&["AKCp", &rnd(91, ALNUM, 69)]),
            c(&["AKCp", "x"]),
        ),
        one(
            "alibaba-access-key-id",
            c(&["LTAI", &rnd(92, ALNUM, 20)]),
            c(&["LTAI", "x"]),
        ),
        one(
            "tencent-secret-id",
            c(&["AKID", &rnd(93, ALNUM, 32)]),
            c(&["AKID", "x"]),
        ),
        one(
            "sourcegraph-token",
            c(&["sgp", "_", &rnd(94, HEX, 40)]),
            c(&["sgp", "_", "x"]),
        ),
        one(
            "planetscale-token",
            c(&["pscale", "_tkn_", &rnd(95, ALNUM, 43)]),
            c(&["pscale", "_tkn_", "x"]),
        ),
        one(
            "dynatrace-token",
            c(&[
                "dt0c01",
                ".",
                &rnd(96, UPPERNUM, 24),
                ".",
                &rnd(97, UPPERNUM, 64),
            ]),
            c(&["dt0c01", ".", "X"]),
        ),
        one(
            "mapbox-secret-token",
            c(&[
                "sk",
                ".eyJ",
                &rnd(98, B64URL, 60),
                ".",
                &rnd(99, B64URL, 22),
            ]),
            c(&["sk", ".eyJ", "x"]),
        ),
        one(
            "firebase-cloud-messaging-key",
            c(&[
                "AAAA",
                &rnd(100, B64URL, 7),
                ":APA91b",
                &rnd(101, B64URL, 134),
            ]),
            c(&["AAAA", "x:APA91b", "y"]),
        ),
    ]
    .into_iter()
    .map(|(id, pos, miss)| {
        (
            id,
            pos,
            miss.into_iter().chain([rnd(7, LOWER, 40)]).collect(),
        )
    })
    .collect()
}

#[test]
fn every_default_rule_has_cases() {
    let covered: BTreeSet<&str> = cases().iter().map(|(id, _, _)| *id).collect();
    for r in defaults().rules() {
        assert!(
            covered.contains(r.id()),
            "default rule {} has no test cases",
            r.id()
        );
    }
}

#[test]
fn default_rules_detect_true_positives() {
    let set = defaults();
    for (id, positives, _) in cases() {
        for text in positives {
            let found = ids(&set, &text);
            assert!(
                found.contains(id),
                "rule {id} missed a true positive (found {found:?})"
            );
        }
    }
}

#[test]
fn default_rules_ignore_near_misses() {
    let set = defaults();
    for (id, _, misses) in cases() {
        for text in misses {
            let found = ids(&set, &text);
            assert!(
                found.is_empty(),
                "near miss for {id} reported as {found:?}: {text:?}"
            );
        }
    }
}

#[test]
fn findings_never_contain_the_secret() {
    let set = defaults();
    for (id, positives, _) in cases() {
        for text in positives {
            for f in set.scan(text.as_bytes(), Some("a.txt")) {
                let shown = format!("{f} {f:?}");
                // No run of 12 bytes from the secret-bearing input's
                // high-entropy part may survive: check every 12-byte window
                // of each detected secret's line that is not context.
                let secretish: Vec<&str> = text
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| w.len() >= 16)
                    .collect();
                for w in secretish {
                    assert!(
                        !shown.contains(&w[4..]),
                        "rule {id}: finding shows secret material: {shown}"
                    );
                }
            }
        }
    }
}

#[test]
fn findings_carry_line_column_and_masked_excerpt() {
    let key = format!("{}{}", "AKIA", rnd(40, UPPER32, 16));
    let text = format!("first line\nsecond\n  aws_id = \"{key}\" # prod\n");
    let fs = defaults().scan(text.as_bytes(), Some("deploy/env.sh"));
    assert_eq!(fs.len(), 1, "{fs:?}");
    let f = &fs[0];
    assert_eq!(
        (f.rule_id.as_str(), f.line, f.column),
        ("aws-access-key-id", 3, 13)
    );
    assert_eq!(f.excerpt, "  aws_id = \"AKIA***\" # prod");
    assert_eq!(
        f.to_string(),
        "deploy/env.sh:3:13: aws-access-key-id (AWS access key id):   aws_id = \"AKIA***\" # prod"
    );
}

#[test]
fn two_secrets_on_one_line_are_both_masked() {
    let id = format!("{}{}", "AKIA", rnd(41, UPPER32, 16));
    let sk = rnd(42, B64, 40);
    let text = format!("aws_access_key_id={id} aws_secret_access_key={sk}\n");
    let fs = defaults().scan(text.as_bytes(), None);
    assert!(fs.len() >= 2, "{fs:?}");
    for f in &fs {
        assert!(
            !f.excerpt.contains(&id[4..]) && !f.excerpt.contains(&sk[4..]),
            "{}",
            f.excerpt
        );
    }
}

#[test]
fn invalid_utf8_and_control_bytes_are_tolerated() {
    let mut data = b"\xff\xfe\x00garbage \x1b[31m ".to_vec();
    data.extend(format!("{}_{}", "ghp", rnd(43, ALNUM, 36)).as_bytes());
    data.extend(b" \x1b]0;title\x07 \xc3\x28\n");
    let fs = defaults().scan(&data, None);
    assert_eq!(fs.len(), 1);
    assert!(
        !fs[0].excerpt.chars().any(char::is_control),
        "{:?}",
        fs[0].excerpt
    );
}

#[test]
fn reader_scan_matches_slice_scan_across_chunk_boundaries() {
    let set = defaults();
    let filler = "let x = compute(a, b); // ordinary code line here\n";
    let mut text = String::new();
    let mut expected = Vec::new();
    let mut n = 0u64;
    // ~20 MiB: three chunks, with secrets on both sides of each boundary.
    while text.len() < 20 << 20 {
        text.push_str(filler);
        if text.len() % (1 << 20) < filler.len() || (text.len() + 64) % (8 << 20) < 200 {
            n += 1;
            let line = text.matches('\n').count() + 1;
            text.push_str(&format!("tok = {}_{}\n", "ghp", rnd(100 + n, ALNUM, 36)));
            expected.push(line);
        }
    }
    assert!(expected.len() > 10, "{}", expected.len());
    let whole: Vec<usize> = set
        .scan(text.as_bytes(), None)
        .iter()
        .map(|f| f.line)
        .collect();
    let streamed: Vec<usize> = set
        .scan_reader(text.as_bytes(), None)
        .expect("in-memory read")
        .iter()
        .map(|f| f.line)
        .collect();
    assert_eq!(whole, expected);
    assert_eq!(streamed, expected);
}

#[test]
fn entropy_is_bits_per_byte() {
    assert_eq!(shannon_entropy(b""), 0.0);
    assert_eq!(shannon_entropy(b"aaaa"), 0.0);
    assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
}

#[test]
fn the_repository_sources_are_clean() {
    // Our own git-gate must accept this workspace: scan the crates we own.
    let set = defaults();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.to_path_buf(), root.join("../git-gate")];
    let mut scanned = 0;
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                scanned += 1;
                let fs = set.scan(&bytes, path.to_str());
                assert!(
                    fs.is_empty(),
                    "{}",
                    fs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
    assert!(scanned > 5);
}

const GITLEAKS_STYLE: &str = r#"
title = "operator rules"

[extend]
useDefault = true
disabledRules = ["jwt"]

[allowlist]
description = "vendored"
paths = ['''(^|/)vendor/''', '''\.lock$''']

[[rules]]
id = "acme-internal-token"
description = "ACME internal token"
regex = '''acme_(?:live|test)_([a-z0-9]{24})'''
secretGroup = 1
keywords = ["acme_live", "acme_test"]
entropy = 2.5
tags = ["internal"]
[[rules.allowlists]]
condition = "AND"
paths = ['''(^|/)fixtures/''']
stopwords = ["fixture"]

[[rules]]
id = "literal-brace"
description = "Go-ism: a literal brace"
regex = '''token{[a-z]{4}}'''
keywords = ["token{"]

[[rules]]
id = "key-file"
description = "a key file by name"
path = '''(^|/)id_(?:rsa|ed25519)$'''
"#;

#[test]
fn gitleaks_format_file_loads_and_applies() {
    let set = RuleSet::from_toml(GITLEAKS_STYLE, "operator.toml").expect("loads");
    assert!(
        set.rules().iter().any(|r| r.id() == "github-pat"),
        "useDefault keeps the defaults"
    );
    assert!(
        !set.rules().iter().any(|r| r.id() == "jwt"),
        "disabledRules drops jwt"
    );
    let tok = format!(
        "{}_{}_{}",
        "acme",
        "live",
        rnd(50, "abcdefghijklmnopqrstuvwxyz0123456789", 24)
    );
    let hit = |text: &str, path: &str| {
        set.scan(text.as_bytes(), Some(path))
            .into_iter()
            .map(|f| f.rule_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(hit(&tok, "src/a.rs"), vec!["acme-internal-token"]);
    assert!(
        hit(&tok, "vendor/x/a.rs").is_empty(),
        "global path allowlist"
    );
    assert_eq!(
        hit(&format!("fixture-{tok}"), "src/a.rs"),
        vec!["acme-internal-token"],
        "AND needs the path too"
    );
    let fixture_tok = format!(
        "{}_{}_{}fixture",
        "acme",
        "test",
        &rnd(51, "abcdefghijklmnopqrstuvwxyz0123456789", 17)
    );
    assert!(
        hit(&fixture_tok, "tests/fixtures/a.rs").is_empty(),
        "AND: path and stopword"
    );
    assert_eq!(hit("x = token{abcd}", "a"), vec!["literal-brace"]);
    assert_eq!(hit("", "home/.ssh/id_rsa"), vec!["key-file"]);
}

fn load_err(text: &str) -> String {
    match RuleSet::from_toml(text, "bad.toml") {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_rule_files_name_file_rule_and_problem() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rules]]\nid = \"r1\"\nregex = '''(unclosed'''\n",
            "bad.toml: rule \"r1\": regex \"(unclosed\" does not compile",
        ),
        (
            "[[rules]]\nid = \"r2\"\nregx = 'a'\nregex = 'a'\n",
            "bad.toml: rule \"r2\": unknown field `regx`",
        ),
        (
            "[[rules]]\nid = \"r3\"\ndescription = \"no pattern\"\n",
            "bad.toml: rule \"r3\": has neither regex nor path",
        ),
        (
            "[[rules]]\nid = \"r4\"\nregex = '(a)'\nsecretGroup = 2\n",
            "bad.toml: rule \"r4\": secretGroup 2 but the regex has 1 capture group(s)",
        ),
        (
            "[[rules]]\nid = \"r5\"\nregex = 'a'\n[[rules]]\nid = \"r5\"\nregex = 'b'\n",
            "bad.toml: rule \"r5\": the id appears more than once",
        ),
        (
            "[[rules]]\nid = \"r6\"\nregex = 'a'\n[rules.allowlist]\ncondition = \"XOR\"\nstopwords = ['x']\n",
            "bad.toml: rule \"r6\": allowlist: condition \"XOR\" is not valid; expected \"OR\" or \"AND\"",
        ),
        (
            "[[rules]]\nid = \"r7\"\nregex = 'a'\nentropy = 12.0\n",
            "bad.toml: rule \"r7\": entropy 12 is out of range",
        ),
        (
            "[[rules]]\nregex = 'a'\n",
            "bad.toml: rule \"#1\": missing field `id`",
        ),
        (
            "[[rules]]\nid = \"r9\"\nregex = 'a'\nkeywords = ['']\n",
            "bad.toml: rule \"r9\": keywords contains an empty string",
        ),
        ("rules = 3\n", "bad.toml: not a gitleaks rule file:"),
        (
            "[allowlist]\nregexTarget = \"body\"\nregexes = ['a']\n",
            "bad.toml: rule \"[allowlist]\": allowlist: regexTarget \"body\" is not valid",
        ),
        (
            "[extend]\npath = \"other.toml\"\n",
            "extend.path and extend.url are not supported",
        ),
    ];
    for (text, want) in cases {
        let got = load_err(text);
        assert!(
            got.starts_with(want) || got.contains(want),
            "for {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn load_reports_missing_file() {
    let err = RuleSet::load(std::path::Path::new("/nonexistent/rules.toml"))
        .err()
        .map(|e| e.to_string());
    assert!(
        matches!(err.as_deref(), Some(s) if s.starts_with("/nonexistent/rules.toml: cannot read rule file")),
        "{err:?}"
    );
    let _unused: Option<RuleError> = None;
}

mod properties {
    use proptest::prelude::*;

    use super::{UPPER32, defaults, rnd_distinct};
    use crate::RuleSet;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let set = defaults();
            for f in set.scan(&data, Some("x")) {
                prop_assert!(f.line >= 1 && f.column >= 1 && f.offset < data.len());
            }
        }

        #[test]
        fn a_planted_key_is_found_and_masked(prefix in "[ -~\n]{0,300}", suffix in "[ -~\n]{0,300}", seed in any::<u64>()) {
            let key = format!("{}{}", "AKIA", rnd_distinct(seed, UPPER32, 16));
            let text = format!("{prefix} {key} {suffix}");
            let fs = defaults().scan(text.as_bytes(), None);
            let line = text[..prefix.len() + 1].matches('\n').count() + 1;
            let hit = fs.iter().find(|f| f.rule_id == "aws-access-key-id" && f.offset == prefix.len() + 1);
            // An allowlisted placeholder (EXAMPLE…) cannot come out of distinct characters, but the
            // prefix may glue letters onto the key and break the word boundary.
            if !prefix.ends_with(|c: char| c.is_ascii_alphanumeric()) {
                prop_assert!(hit.is_some(), "missed {key} in {text:?}: {fs:?}");
            }
            for f in &fs {
                prop_assert!(!f.excerpt.contains(&key[4..]), "excerpt leaks: {}", f.excerpt);
            }
            if let Some(h) = hit {
                prop_assert_eq!(h.line, line);
            }
        }

        #[test]
        fn arbitrary_rule_text_is_an_error_not_a_panic(regex in "\\PC{0,40}", kw in "[a-z_{}]{0,6}") {
            let toml = format!("[[rules]]\nid = \"p\"\nregex = '''{}'''\nkeywords = [\"{}\"]\n", regex.replace('\'', ""), kw);
            let _ = RuleSet::from_toml(&toml, "prop.toml");
        }
    }
}

#[test]
fn capped_reader_scan_keeps_the_first_and_counts_all() {
    let text: String = (0..50)
        .map(|i| format!("k{i} = {}_{}\n", "ghp", rnd(200 + i, ALNUM, 36)))
        .collect();
    let (fs, total) = defaults()
        .scan_reader_capped(text.as_bytes(), None, 7)
        .expect("in-memory read");
    assert_eq!((fs.len(), total), (7, 50));
    assert_eq!(
        fs.iter().map(|f| f.line).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
}

/// The built-in rules load without compiling their regexes (they compile
/// on first use); loading the same text as an operator's file compiles and
/// checks every regex and secretGroup, so a bad built-in pattern fails here
/// instead of on a first use in production.
#[test]
fn built_in_regexes_all_compile() {
    let checked = RuleSet::from_toml(crate::rules::DEFAULT_RULES, "default_rules.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.len(), defaults().len());
    for r in &defaults().rules {
        let _ = r.regex.as_deref().map(|re| re.captures_len());
        let _ = r.path.as_deref();
        for a in &r.allowlists {
            for re in a.regexes.iter().chain(&a.paths) {
                let _ = re.captures_len();
            }
        }
    }
}

mod prefilter {
    use proptest::prelude::*;

    use crate::{Profile, RuleSet};

    fn naive(set: &RuleSet, lower: &[u8]) -> Vec<bool> {
        set.keywords
            .iter()
            .map(|k| lower.windows(k.len()).any(|w| w == k.as_bytes()))
            .collect()
    }

    /// Keywords that overlap, nest and share anchors.
    fn tricky() -> RuleSet {
        let kws = [
            "ab", "abc", "abcd", "bcd", "x", "kiak", "akia", "aki", "tokenz", "token", "ke-y", "-y",
        ];
        let mut t = String::new();
        for (i, k) in kws.iter().enumerate() {
            t.push_str(&format!(
                "[[rules]]\nid = \"r{i}\"\nregex = 'zzz'\nkeywords = [\"{k}\"]\n"
            ));
        }
        RuleSet::from_toml(&t, "tricky.toml").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The anchored prefilter finds exactly the keywords present.
        #[test]
        fn anchors_find_exactly_the_keywords_present(
            text in "[abcdekiotnxyz_.:= -]{0,200}",
            kw in prop::collection::vec(0usize..200, 0..6),
        ) {
            for set in [RuleSet::builtin(Profile::Egress), tricky()] {
                // Plant some of the set's own keywords in the text.
                let mut t = text.clone().into_bytes();
                for &k in &kw {
                    let word = set.keywords[k % set.keywords.len()].clone();
                    let at = k % (t.len() + 1);
                    t.splice(at..at, word.bytes());
                }
                prop_assert_eq!(set.keywords_in(&t), naive(&set, &t));
            }
        }
    }
}
