use super::*;

#[test]
fn a_dockerfile_needs_from_and_a_bounded_size() {
    assert!(validate_dockerfile("FROM claude-bottle/base\nRUN true\n").is_ok());
    assert!(validate_dockerfile("# c\n  from x AS y\n").is_ok());
    let e = validate_dockerfile("RUN true\n").unwrap_err();
    assert!(e.contains("no FROM"), "{e}");
    let big = format!("FROM x\n{}", "#".repeat(MAX_DOCKERFILE));
    assert!(validate_dockerfile(&big).unwrap_err().contains("at most"));
}

#[test]
fn the_transcript_lives_in_the_agents_home() {
    assert_eq!(transcript_dir(), "/home/agent/.claude/projects");
}

#[test]
fn the_answer_is_seen_in_text_and_json_logs_of_that_id_only() {
    let id = "20261123-140509-01i0m1jh";
    let text = format!(
        "2026-11-23T14:06:31Z  INFO supervise::server: decision observed tool=\"capability-block\" id={id} outcome=Approved\n"
    );
    assert!(log_shows_answer(&text, id));
    let json = format!(
        "{{\"timestamp\":\"…\",\"level\":\"INFO\",\"fields\":{{\"message\":\"decision observed\",\"tool\":\"capability-block\",\"id\":\"{id}\"}}}}\n"
    );
    assert!(log_shows_answer(&json, id));
    assert!(
        !log_shows_answer(&text, "20261123-140509-zzzzzzzz"),
        "another id"
    );
    let queued =
        format!("INFO supervise::server: proposal queued; waiting for the operator id={id}\n");
    assert!(!log_shows_answer(&queued, id), "queued is not answered");
}
