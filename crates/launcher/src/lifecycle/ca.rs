//! The per-bottle certificate authority egress-proxy signs its interception
//! certificates with.
//!
//! Minted fresh for every bottle with rcgen (ECDSA P-256, short validity).
//! The certificate goes into the agent's trust store and into egress; the
//! key goes only into the egress container. The key is wrapped so that
//! `Debug` never prints it.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, date_time_ymd,
};

/// How long a bottle CA is valid (a bottle lives hours, not months).
pub const VALIDITY_DAYS: i64 = 30;

/// Why the CA could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused (key generation or signing).
    #[error("minting the bottle CA for {identity}: {source}")]
    Mint {
        /// The bottle.
        identity: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The clock is outside what a certificate can express.
    #[error(
        "minting the bottle CA for {identity}: the system date {date} cannot be used for a certificate validity"
    )]
    Date {
        /// The bottle.
        identity: String,
        /// The offending date.
        date: String,
    },
}

/// PEM private key; `Debug` prints `Secret(***)`, no `Display`.
#[derive(Clone)]
pub struct CaKeyPem(String);

impl CaKeyPem {
    /// The PEM text, for writing into the egress container only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CaKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A bottle's CA: certificate (public) and key (egress only).
#[derive(Clone, Debug)]
pub struct BottleCa {
    /// SHA-256 fingerprint of the certificate (DER), as `AB:CD:…` (the
    /// form `openssl x509 -fingerprint -sha256` prints), so the operator
    /// can recognise the CA a client shows.
    pub sha256: String,
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: CaKeyPem,
}

impl BottleCa {
    /// Mints a CA named after `identity`, valid from yesterday (clock skew)
    /// for [`VALIDITY_DAYS`] days from `today`.
    pub fn mint(identity: &str, today: jiff::civil::Date) -> Result<Self, CaError> {
        let mint_err = |source| CaError::Mint {
            identity: identity.to_owned(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(mint_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("claude-bottle CA {identity}"));
        dn.push(DnType::OrganizationName, "claude-bottle");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let date_err = |d: jiff::civil::Date| CaError::Date {
            identity: identity.to_owned(),
            date: d.to_string(),
        };
        let from = today.yesterday().map_err(|_| date_err(today))?;
        let until = today
            .checked_add(jiff::Span::new().days(VALIDITY_DAYS))
            .map_err(|_| date_err(today))?;
        let (fy, fm, fd) = ymd(from).ok_or_else(|| date_err(from))?;
        let (uy, um, ud) = ymd(until).ok_or_else(|| date_err(until))?;
        params.not_before = date_time_ymd(fy, fm, fd);
        params.not_after = date_time_ymd(uy, um, ud);
        let cert = params.self_signed(&key).map_err(mint_err)?;
        Ok(Self {
            sha256: fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: CaKeyPem(key.serialize_pem()),
        })
    }
}

/// Year, month, day within what a certificate (and rcgen) accepts.
fn ymd(d: jiff::civil::Date) -> Option<(i32, u8, u8)> {
    let year = i32::from(d.year());
    if !(1950..=9999).contains(&year) {
        return None;
    }
    Some((
        year,
        u8::try_from(d.month()).ok()?,
        u8::try_from(d.day()).ok()?,
    ))
}

/// `AB:CD:…`: the SHA-256 of `der` in uppercase hex pairs.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
