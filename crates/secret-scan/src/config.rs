//! The gitleaks TOML schema, as serde types (raw: validated in `rules`).
//!
//! Accepted keys mirror gitleaks v8: top-level `title`, `minVersion`,
//! `[extend]`, `[[rules]]`, `[allowlist]` and `[[allowlists]]`; per rule `id`,
//! `description`, `regex`, `path`, `secretGroup`, `entropy`, `keywords`,
//! `tags`, `skipReport`, `[rules.allowlist]` and `[[rules.allowlists]]`.
//! Unknown keys are errors so typos do not silently disable a rule.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[allow(dead_code)]
    pub title: Option<String>,
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(rename = "minVersion")]
    #[allow(dead_code)]
    pub min_version: Option<String>,
    pub extend: Option<RawExtend>,
    /// Kept as tables so each rule's errors can name its id.
    #[serde(default)]
    pub rules: Vec<toml::Table>,
    pub allowlist: Option<RawAllowlist>,
    #[serde(default)]
    pub allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtend {
    #[serde(rename = "useDefault", default)]
    pub use_default: bool,
    pub path: Option<String>,
    pub url: Option<String>,
    #[serde(rename = "disabledRules", default)]
    pub disabled_rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub regex: Option<String>,
    pub path: Option<String>,
    #[serde(rename = "secretGroup")]
    pub secret_group: Option<i64>,
    pub entropy: Option<f64>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub tags: Vec<String>,
    #[serde(rename = "skipReport", default)]
    pub skip_report: bool,
    pub allowlist: Option<RawAllowlist>,
    #[serde(default)]
    pub allowlists: Vec<RawAllowlist>,
    #[serde(rename = "requiredRules")]
    pub required_rules: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllowlist {
    pub description: Option<String>,
    pub condition: Option<String>,
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub regexes: Vec<String>,
    #[serde(rename = "regexTarget")]
    pub regex_target: Option<String>,
    #[serde(default)]
    pub stopwords: Vec<String>,
    #[serde(rename = "targetRules", default)]
    pub target_rules: Vec<String>,
}
