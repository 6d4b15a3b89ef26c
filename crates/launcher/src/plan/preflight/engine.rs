//! Which Docker engines a bottle may run on, and what protects it there.
//!
//! Is: the assessment of an engine's version report (refuse what cannot be
//! protected, with what to upgrade), the lines the preflight and
//! `--dry-run --format json` show about DNS and the host wall, and the
//! reading of the host's own IPv4 addresses (`/proc/net/fib_trie`) that
//! proves the internal bridge got none.
//!
//! Is not: a Docker client. `docker::Engine::info` fetches the raw report;
//! the lifecycle runs the host check after creating the network.

use std::net::Ipv4Addr;

use serde::Serialize;

/// The oldest engine release the walls are built and tested on.
pub const MIN_ENGINE: (u32, u32) = (20, 10);
/// The oldest engine API version (Docker 20.10).
pub const MIN_API: (u32, u32) = (1, 41);
/// The first release whose embedded DNS stops forwarding names out of
/// internal networks by itself (CVE-2024-29018, moby#47589).
pub const DNS_FIXED_IN: (u32, u32, u32) = (25, 0, 5);

/// What the engine says about itself (`GET /version`, `GET /info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineInfo {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// API version, e.g. `1.41`.
    pub api_version: String,
    /// `linux` or `windows`.
    pub os: String,
    /// Names of the platform and components (`Docker Engine - Community`,
    /// `Podman Engine`, …).
    pub platform: Vec<String>,
    /// `name=rootless` among the security options.
    pub rootless: bool,
    /// Network drivers the engine offers.
    pub network_drivers: Vec<String>,
}

/// The engine a bottle runs on and the protections in force there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineReport {
    /// Engine version.
    pub version: String,
    /// API version.
    pub api_version: String,
    /// Rootless engine.
    pub rootless: bool,
    /// Whether this engine's embedded DNS would forward unknown names out
    /// of an internal network by itself (engines before 25.0.5); `None`
    /// when the version is not a release number.
    pub engine_dns_forwards_out: Option<bool>,
    /// The DNS protection in force (one line).
    pub dns: String,
    /// The host wall (one line).
    pub host: String,
}

/// Why an engine is refused; each says what to use instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineRefusal {
    /// Older than [`MIN_ENGINE`] / [`MIN_API`].
    #[error(
        "Docker engine {version} (API {api}) is too old: the bottle's network walls (an internal bridge without a host address, the DNS sink, dropped capabilities) are built and tested on Docker Engine 20.10 (API 1.41) and newer; upgrade the engine to 20.10 or newer, preferably 25.0.5 or newer (CVE-2024-29018)"
    )]
    TooOld {
        /// Reported version.
        version: String,
        /// Reported API version.
        api: String,
    },
    /// Not a Linux engine.
    #[error(
        "Docker engine {version} runs {os} containers; bottles need a Linux engine (switch Docker to Linux containers)"
    )]
    NotLinux {
        /// Reported version.
        version: String,
        /// Reported OS.
        os: String,
    },
    /// Podman (or another engine) behind Docker's API.
    #[error(
        "the engine reports itself as {platform} {version}; the bottle's network walls rely on Docker Engine's bridge driver (internal networks, inhibit_ipv4, the embedded DNS), so use Docker Engine 20.10 or newer"
    )]
    NotDocker {
        /// The platform name.
        platform: String,
        /// Reported version.
        version: String,
    },
    /// No bridge network driver.
    #[error(
        "Docker engine {version} offers no bridge network driver (it has: {drivers}); bottles need one for their internal network; use an engine with the default bridge driver"
    )]
    NoBridge {
        /// Reported version.
        version: String,
        /// The drivers it has.
        drivers: String,
    },
}

/// `major.minor.patch` at the start of an engine version (`20.10.24+dfsg1`,
/// `v25.0.5`, `28.2.2-1ubuntu1`); a missing patch is 0.
pub fn parse_release(version: &str) -> Option<(u32, u32, u32)> {
    let v = version.trim().trim_start_matches('v');
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let mut parts = v[..end].split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => 0,
    };
    Some((major, minor, patch))
}

/// `major.minor` of an API version (`1.41`).
pub fn parse_api(api: &str) -> Option<(u32, u32)> {
    let (major, minor) = api.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Decides whether a bottle may run on this engine, and what protects it.
pub fn assess(info: &EngineInfo) -> Result<EngineReport, EngineRefusal> {
    if let Some(p) = info
        .platform
        .iter()
        .find(|p| p.to_ascii_lowercase().contains("podman"))
    {
        return Err(EngineRefusal::NotDocker {
            platform: p.clone(),
            version: info.version.clone(),
        });
    }
    if !info.os.is_empty() && !info.os.eq_ignore_ascii_case("linux") {
        return Err(EngineRefusal::NotLinux {
            version: info.version.clone(),
            os: info.os.clone(),
        });
    }
    let release = parse_release(&info.version);
    let api_ok = parse_api(&info.api_version).is_some_and(|a| a >= MIN_API);
    let release_ok = release.is_none_or(|(a, b, _)| (a, b) >= MIN_ENGINE);
    if !api_ok || !release_ok {
        return Err(EngineRefusal::TooOld {
            version: info.version.clone(),
            api: info.api_version.clone(),
        });
    }
    if !info.network_drivers.is_empty() && !info.network_drivers.iter().any(|d| d == "bridge") {
        return Err(EngineRefusal::NoBridge {
            version: info.version.clone(),
            drivers: info.network_drivers.join(", "),
        });
    }
    let forwards = release.map(|r| r < DNS_FIXED_IN);
    let engine_note = match forwards {
        Some(true) => format!(
            "engine {} (< 25.0.5) would otherwise forward them to the host's resolvers (CVE-2024-29018)",
            info.version
        ),
        Some(false) => format!(
            "engine {} (>= 25.0.5) also stops forwarding out of internal networks itself",
            info.version
        ),
        None => format!("engine version {:?} is not a release number", info.version),
    };
    Ok(EngineReport {
        version: info.version.clone(),
        api_version: info.api_version.clone(),
        rootless: info.rootless,
        engine_dns_forwards_out: forwards,
        dns: format!(
            "the bottle's names only: any other name is forwarded to a sink ({} in the agent's own network namespace, where nothing listens); {engine_note}",
            crate::plan::DNS_SINK
        ),
        host: format!(
            "internal bridge without a host address ({}=true, checked after creation), IPv6 off in the agent: the agent's default route leads nowhere{}",
            crate::plan::INHIBIT_IPV4,
            if info.rootless {
                "; rootless engine: the bridge lives in its own network namespace"
            } else {
                ""
            }
        ),
    })
}

/// The host's local IPv4 addresses, from `/proc/net/fib_trie` (each
/// `|-- a.b.c.d` followed by a `/32 host LOCAL` line), deduplicated.
pub fn local_ipv4_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+']);
        if let Some(ip) = t.strip_prefix("-- ") {
            last = ip.trim().parse().ok();
        } else if t.trim() == "/32 host LOCAL"
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Whether `ip` lies in the IPv4 CIDR `cidr` (`172.18.0.0/16`); `false`
/// for anything that is not an IPv4 CIDR.
pub fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests;
