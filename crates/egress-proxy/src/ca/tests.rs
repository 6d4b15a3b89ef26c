use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::*;

fn ca_pem() -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "unit CA");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn mints_and_caches_leaves_for_names_and_ips() {
    let (c, k) = ca_pem();
    let ca = CertAuthority::from_pem(&c, &k, "ca.pem", "ca.key").expect("ca");
    let a = ca.server_config("api.example.com").expect("dns leaf");
    let b = ca.server_config("API.example.com").expect("cached");
    assert!(Arc::ptr_eq(&a, &b), "cache is case-insensitive");
    ca.server_config("10.1.2.3").expect("ip leaf");
    ca.server_config("::1").expect("v6 leaf");
    ca.server_config("_egress.local").expect("magic host leaf");
    assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn bad_inputs_name_the_file() {
    let (c, k) = ca_pem();
    let (_, other_key) = ca_pem();
    let cases: &[(&str, &str, &str)] = &[
        ("garbage", &k, "ca.pem: no PEM CERTIFICATE"),
        (&c, "garbage", "ca.key: no PKCS#8"),
        (
            &c,
            &other_key,
            "ca.key does not match the certificate in ca.pem",
        ),
    ];
    for (cert, key, want) in cases {
        let e = CertAuthority::from_pem(cert, key, "ca.pem", "ca.key").expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
    }
    let e = CertAuthority::load(
        Path::new("/nonexistent/ca.pem"),
        Path::new("/nonexistent/ca.key"),
    )
    .expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}
