use super::*;

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 23)
}

#[test]
fn mints_a_pem_certificate_and_a_reloadable_p256_key() {
    let ca = BottleCa::mint("dev-k3x9a", today()).expect("mint");
    assert!(
        ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.cert_pem
    );
    assert!(ca.key_pem.expose().contains("PRIVATE KEY"));
    let key = KeyPair::from_pem(ca.key_pem.expose()).expect("key reloads");
    assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);
}

#[test]
fn every_bottle_gets_its_own_key() {
    let a = BottleCa::mint("dev-aaaaa", today()).expect("mint");
    let b = BottleCa::mint("dev-aaaaa", today()).expect("mint");
    assert_ne!(a.key_pem.expose(), b.key_pem.expose());
    assert_ne!(a.cert_pem, b.cert_pem);
}

#[test]
fn debug_never_prints_the_key() {
    let ca = BottleCa::mint("dev-k3x9a", today()).expect("mint");
    let dbg = format!("{ca:?}");
    assert!(dbg.contains("Secret(***)"), "{dbg}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
}

#[test]
fn a_date_out_of_certificate_range_is_an_error_not_a_panic() {
    let err =
        BottleCa::mint("dev-k3x9a", jiff::civil::date(9999, 12, 15)).expect_err("out of range");
    assert!(err.to_string().contains("dev-k3x9a"), "{err}");
}

#[test]
fn the_fingerprint_is_the_sha256_of_the_certificate_der() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let ca = BottleCa::mint("dev-k3x9a", today()).expect("mint");
    let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("pem");
    let want: Vec<String> = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(ca.sha256, want.join(":"));
    assert_eq!(ca.sha256.len(), 32 * 3 - 1);
    assert_eq!(fingerprint(b"abc").get(..8), Some("BA:78:16"));
}
