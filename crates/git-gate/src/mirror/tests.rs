use super::symref_head;

#[test]
fn reads_the_symbolic_head_line() {
    let out = "ref: refs/heads/trunk\tHEAD\n1234567890123456789012345678901234567890\tHEAD\n";
    assert_eq!(symref_head(out), Some("refs/heads/trunk"));
    assert_eq!(symref_head("1234\tHEAD\n"), None);
    assert_eq!(symref_head("ref: refs/tags/x\tHEAD\n"), None);
}
