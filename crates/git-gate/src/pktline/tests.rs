use super::{PktError, check_all, command_section_end, encode};

#[test]
fn whole_requests_pass() {
    let mut req = encode(b"command=ls-refs\n");
    req.extend(b"0001");
    req.extend(encode(b"peel\n"));
    req.extend(b"0000");
    assert_eq!(check_all(&req), Ok(()));
    assert_eq!(check_all(b""), Ok(()));
}

#[test]
fn malformed_requests_name_the_problem() {
    assert_eq!(
        check_all(b"zzzzhello"),
        Err(PktError::BadPrefix {
            offset: 0,
            prefix: "zzzz".into()
        })
    );
    assert_eq!(
        check_all(b"0003"),
        Err(PktError::BadLength { offset: 0, len: 3 })
    );
    assert_eq!(
        check_all(b"0009abc"),
        Err(PktError::Truncated { offset: 0 })
    );
    assert_eq!(check_all(b"00"), Err(PktError::Truncated { offset: 0 }));
    assert_eq!(check_all(b"fff0"), Err(PktError::Truncated { offset: 0 }));
    assert_eq!(
        check_all(b"fff1xxxx"),
        Err(PktError::BadLength {
            offset: 0,
            len: 0xfff1
        })
    );
}

#[test]
fn receive_pack_command_section() {
    let mut req = encode(b"0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\0report-status\n");
    let cmd_len = req.len();
    assert_eq!(command_section_end(&req), Ok(None));
    req.extend(b"0000PACK....");
    assert_eq!(command_section_end(&req), Ok(Some(cmd_len + 4)));
    assert_eq!(command_section_end(&req[..10]), Ok(None));
    assert!(command_section_end(b"PACK").is_err());
}
