use super::*;

#[test]
fn strip_ansi_removes_colour_codes_only() {
    assert_eq!(
        strip_ansi("\u{1b}[91museradd warning\n\u{1b}[0m"),
        "useradd warning\n"
    );
    assert_eq!(strip_ansi("plain [text]"), "plain [text]");
    assert_eq!(strip_ansi("\u{1b}"), "");
}

#[test]
fn label_filters_use_docker_key_value_syntax() {
    let f = label_filters(&[("a", "1"), ("b", "2")]);
    assert_eq!(f["label"], vec!["a=1", "b=2"]);
}

#[test]
fn errors_name_the_operation_and_object_and_keep_dockers_message() {
    let source = bollard::errors::Error::DockerResponseServerError {
        status_code: 409,
        message: "Conflict. The container name is already in use".into(),
    };
    let e = DockerError::CreateContainer {
        name: "claude-bottle-egress-dev-k3x9a".into(),
        source,
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("creating container claude-bottle-egress-dev-k3x9a: "),
        "{msg}"
    );
    assert!(
        msg.contains("Conflict. The container name is already in use"),
        "{msg}"
    );
}
