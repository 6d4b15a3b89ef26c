//! The per-bottle certificate authority: loads the CA from PEM files and
//! mints short-lived leaf certificates (ECDSA P-256) for intercepted hosts,
//! cached per host.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a minted leaf is valid (it is backdated by one day for clock skew).
const LEAF_VALIDITY_DAYS: i64 = 7;
/// A cached leaf is re-minted after this long, well before it expires.
const LEAF_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Upper bound on cached leaves; the cache is cleared when it is reached.
const CACHE_CAP: usize = 4096;

/// Why the CA could not be loaded or a leaf could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: no PEM CERTIFICATE block found; expected the CA certificate in PEM form")]
    NoCert { file: String },
    #[error(
        "{file}: no PKCS#8 PEM \"PRIVATE KEY\" block found ({detail}); expected the CA key in PKCS#8 PEM form (convert with `openssl pkcs8 -topk8 -nocrypt`)"
    )]
    NoKey { file: String, detail: String },
    #[error("{file}: the CA key is not usable: {detail}")]
    BadKey { file: String, detail: String },
    #[error("{file}: not a usable CA certificate: {detail}")]
    BadCert { file: String, detail: String },
    #[error("{key_file} does not match the certificate in {cert_file}: {detail}")]
    Mismatch {
        cert_file: String,
        key_file: String,
        detail: String,
    },
    #[error("minting a leaf certificate for {host:?}: {detail}")]
    Mint { host: String, detail: String },
}

/// The loaded CA plus the leaf cache.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn SigningKey>,
    base: ServerConfig,
    cache: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA certificate and key (PEM) from files.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, CaError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CaError::Read {
                file: p.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert_file)?;
        let key_pem = read(key_file)?;
        Self::from_pem(
            &cert_pem,
            &key_pem,
            &cert_file.display().to_string(),
            &key_file.display().to_string(),
        )
    }

    /// Builds the CA from PEM text; `cert_origin`/`key_origin` name the
    /// inputs in errors.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_origin: &str,
        key_origin: &str,
    ) -> Result<Self, CaError> {
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| CaError::NoCert {
                file: cert_origin.to_owned(),
            })?;
        let key_der = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k,
            Ok(other) => {
                return Err(CaError::NoKey {
                    file: key_origin.to_owned(),
                    detail: format!("found a {} key", key_kind(&other)),
                });
            }
            Err(e) => {
                return Err(CaError::NoKey {
                    file: key_origin.to_owned(),
                    detail: e.to_string(),
                });
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Check that key and certificate belong together before anything
        // is minted with them.
        CertifiedKey::from_der(
            vec![cert_der.clone()],
            PrivateKeyDer::Pkcs8(key_der.clone_key()),
            &provider,
        )
        .map_err(|e| CaError::Mismatch {
            cert_file: cert_origin.to_owned(),
            key_file: key_origin.to_owned(),
            detail: e.to_string(),
        })?;
        let ca_key = KeyPair::try_from(&key_der).map_err(|e| CaError::BadKey {
            file: key_origin.to_owned(),
            detail: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, ca_key).map_err(|e| CaError::BadCert {
            file: cert_origin.to_owned(),
            detail: e.to_string(),
        })?;
        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Mint {
                host: "<leaf key>".into(),
                detail: e.to_string(),
            })?;
        let leaf_signer = load_signer(&provider, &leaf_key)?;
        let base = server_base(provider)?;
        Ok(Self {
            issuer,
            leaf_key,
            leaf_signer,
            base,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A TLS server config presenting a leaf for `host` (a DNS name or an
    /// IP literal), minted on first use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let key = host.to_ascii_lowercase();
        if let Ok(cache) = self.cache.lock()
            && let Some((at, cfg)) = cache.get(&key)
            && at.elapsed() < LEAF_REFRESH
        {
            return Ok(cfg.clone());
        }
        let leaf = self.mint(&key)?;
        let mut cfg = self.base.clone();
        cfg.cert_resolver = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![leaf],
            self.leaf_signer.clone(),
        )));
        let cfg = Arc::new(cfg);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), cfg.clone()));
        }
        Ok(cfg)
    }

    fn mint(&self, host: &str) -> Result<CertificateDer<'static>, CaError> {
        let err = |detail: String| CaError::Mint {
            host: host.to_owned(),
            detail,
        };
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .map_err(|e: rcgen::Error| err(e.to_string()))?,
            ),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let today = jiff::tz::TimeZone::UTC
            .to_datetime(jiff::Timestamp::now())
            .date();
        let from = today
            .checked_sub(jiff::Span::new().days(1))
            .map_err(|e| err(e.to_string()))?;
        let until = today
            .checked_add(jiff::Span::new().days(LEAF_VALIDITY_DAYS))
            .map_err(|e| err(e.to_string()))?;
        params.not_before =
            rcgen::date_time_ymd(i32::from(from.year()), from.month() as u8, from.day() as u8);
        params.not_after = rcgen::date_time_ymd(
            i32::from(until.year()),
            until.month() as u8,
            until.day() as u8,
        );
        let serial: [u8; 16] = rand_serial(host);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(cert.der().clone())
    }
}

fn key_kind(k: &PrivateKeyDer<'_>) -> &'static str {
    match k {
        PrivateKeyDer::Pkcs1(_) => "PKCS#1 RSA",
        PrivateKeyDer::Sec1(_) => "SEC1 EC",
        PrivateKeyDer::Pkcs8(_) => "PKCS#8",
        _ => "non-PKCS#8",
    }
}

fn load_signer(provider: &CryptoProvider, key: &KeyPair) -> Result<Arc<dyn SigningKey>, CaError> {
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(der))
        .map_err(|e| CaError::Mint {
            host: "<leaf key>".into(),
            detail: e.to_string(),
        })
}

fn server_base(provider: Arc<CryptoProvider>) -> Result<ServerConfig, CaError> {
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Mint {
            host: "<server config>".into(),
            detail: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A unique, positive serial: time and host mixed through SHA-free hashing
/// is enough here (serials only need to differ between leaves of one CA).
fn rand_serial(host: &str) -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(host.as_bytes());
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    out[0] &= 0x7f;
    out[0] |= 0x01;
    out
}

#[cfg(test)]
mod tests;
